"""UML-mini: a small unified-metric-learning benchmark that builds offline, from installable material, in seconds.

The paper's eight datasets and its ImageNet-pretrained ViT cannot be downloaded on the project's machines, yet the
method must be exercised end to end. UML-mini keeps the two challenges of unified metric learning (docs/spec.md
section 7):

- heterogeneous domains whose discriminative cues differ: glyphs of three scripts in ~120 typefaces (shape is the class,
  colour is random nuisance), colour emoji (colour *is* the class: skin tones, coloured hearts, circles, squares),
  garments seen in several views (an In-shop-style instance-retrieval domain with query/gallery roles), and
  handwritten two-digit numbers (the order of the digits is the class: mirroring would change it);
- strong imbalance: the largest domain has more than 10x the training images of the smallest;
- class-disjoint train/validation/test splits with at least 20 test classes per domain; the validation classes are
  carved from each domain's training classes, so recipes are chosen without reading the test split.

Build: ``python -m peft_puma.data.uml_mini --output_dir DIR`` (cached in DIR; ``--force`` rebuilds a build there; a
folder holding anything else is never touched). The output is a ``datasets.DatasetDict`` with the row schema of
:mod:`peft_puma.data.schema`. Sources (Debian packages, or a user's own copies: :class:`.sources.SourceFolders`) and
licences: docs/uml_mini.md.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import datasets
import numpy as np

from ...errors import DatasetLayoutError, ForeignContentError, InvalidConfigError
from ...owned_paths import OwnedLayout, discard_staging, make_staging_folder, move_into_place
from ..schema import (
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    ROLE_BOTH,
    ROLE_COLUMN,
    ROLE_GALLERY,
    ROLE_QUERY,
    ROLE_TRAIN,
    SPLITS,
    TEST_SPLIT,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
    row_features,
)
from .render import emoji_bitmap, render_emoji, render_fashion_view, render_glyph, render_number
from .sources import (
    FONT_PACKAGES,
    SOURCES,
    SourceFolders,
    digit_pools,
    emoji_font,
    faces_drawing,
    faces_for,
    load_digits,
    load_fashion,
    require_sources,
)

BUILDER_VERSION = 5  # bump when a change alters the images, so that cached builds are redone
MANIFEST = "uml_mini.json"
FASHION_TRAIN_SIZE = 60_000  # images in Fashion-MNIST's train file, the pool UML-mini draws products from


def _letters(first: int, last: int, skip: str = "") -> str:
    """The letters of a code-point range, without ``skip``: Unicode blocks mix letters with signs and punctuation,
    which would make classes no script user reads as letters."""
    return "".join(chr(c) for c in range(first, last + 1) if chr(c).isalpha() and chr(c) not in skip)


_TONES = ("", "\U0001f3fb", "\U0001f3fc", "\U0001f3fd", "\U0001f3fe", "\U0001f3ff")
_GESTURES = (
    "\U0001f44d\U0001f44e\U0001f44b\u270b\U0001f44c\u270c\U0001f91e\U0001f446\U0001f447\u270a\U0001f44f\U0001f64f"
)
_COLOURED = (
    "\U0001f534\U0001f7e0\U0001f7e1\U0001f7e2\U0001f535\U0001f7e3\U0001f7e4\u26ab\u26aa"  # circles
    "\U0001f7e5\U0001f7e7\U0001f7e8\U0001f7e9\U0001f7e6\U0001f7ea\U0001f7eb\u2b1b\u2b1c"  # squares
    "\U0001f9e1\U0001f49b\U0001f49a\U0001f499\U0001f49c\U0001f90e\U0001f5a4\U0001f90d"  # hearts (red one below)
    "\U0001f4d5\U0001f4d7\U0001f4d8\U0001f4d9\U0001f536\U0001f537\U0001f538\U0001f539\U0001f53a\U0001f53b"
)
EMOJI_CLASSES: tuple[str, ...] = ("\u2764\ufe0f", *_COLOURED, *(g + t for g in _GESTURES for t in _TONES))
"""Emoji classes: 37 that differ mostly by colour (hearts, circles, squares, books, diamonds), and 12 hand gestures
in the default yellow and the 5 skin tones (72)."""


@dataclass(frozen=True)
class SplitSize:
    """How many classes of a domain a split gets, and how many images each of them has."""

    classes: int
    per_class: int


@dataclass(frozen=True)
class DomainSpec:
    """One UML-mini domain: what its classes are, how many of them go to each split, and images per class.

    The validation classes are carved from the training side: they are drawn with the training classes and then held
    out, so the test classes stay what a recipe never sees.
    """

    name: str
    kind: str  # "glyphs" | "emoji" | "fashion" | "numbers": selects the renderer
    classes: tuple[str, ...]  # class keys: characters, emoji sequences, numbers, or Fashion-MNIST image indices
    train: SplitSize
    validation: SplitSize
    test: SplitSize
    cue: str  # what tells its classes apart, in words (summary and docs)

    def size(self, split: str) -> SplitSize:
        """The sizes of ``split`` (one of :data:`SPLITS`), so that the three splits are handled by one code path."""
        return {TRAIN_SPLIT: self.train, VALIDATION_SPLIT: self.validation, TEST_SPLIT: self.test}[split]


# Accented and extended letters make the glyph domains fine-grained and give each split enough classes for
# class-disjoint transfer. U+0110 (Đ) is left out: it is drawn exactly as U+00D0 (Ð), so no cue could tell them apart;
# U+0149 (ŉ) is deprecated and absent from many faces.
LATIN = _letters(0x41, 0x5A) + _letters(0x61, 0x7A) + _letters(0xC0, 0xFF) + _letters(0x100, 0x17F, "\u0110\u0149")
CYRILLIC = _letters(0x400, 0x45F)  # Russian, Ukrainian, Belarusian, Serbian, Macedonian letters
GREEK = _letters(0x386, 0x3CE, "\u03a2")  # the monotonic alphabet with its accented (tonos, dialytika) letters

DOMAINS: tuple[DomainSpec, ...] = (
    DomainSpec(
        "fashion", "fashion", (), SplitSize(1200, 4), SplitSize(300, 4), SplitSize(400, 4),
        "instance details (views of one garment)",
    ),
    DomainSpec("latin", "glyphs", tuple(LATIN), SplitSize(120, 10), SplitSize(40, 10), SplitSize(80, 10), "shape"),
    DomainSpec("cyrillic", "glyphs", tuple(CYRILLIC), SplitSize(48, 10), SplitSize(16, 10), SplitSize(32, 15), "shape"),
    DomainSpec("greek", "glyphs", tuple(GREEK), SplitSize(35, 12), SplitSize(12, 10), SplitSize(22, 20), "shape"),
    DomainSpec(
        "numbers", "numbers", tuple(f"{n:02d}" for n in range(100)), SplitSize(40, 10), SplitSize(15, 10),
        SplitSize(45, 10), "digits and their order",
    ),
    DomainSpec(
        "emoji", "emoji", EMOJI_CLASSES, SplitSize(40, 8), SplitSize(15, 8), SplitSize(54, 8), "colour and shape"
    ),
)  # fmt: skip
GLYPH_ALPHABETS: dict[str, str] = {d.name: "".join(d.classes) for d in DOMAINS if d.kind == "glyphs"}
PACKAGES_BY_KIND: dict[str, tuple[str, ...]] = {
    "glyphs": FONT_PACKAGES, "emoji": ("fonts-noto-color-emoji",), "fashion": ("dataset-fashion-mnist",), "numbers": (),
}  # fmt: skip


def required_packages() -> list[str]:
    """Every Debian package a full UML-mini build reads, in :data:`SOURCES` order (numbers need only scikit-learn)."""
    needed = {p for d in DOMAINS for p in PACKAGES_BY_KIND[d.kind]}
    return [source.package for source in SOURCES if source.package in needed]


@dataclass(frozen=True)
class UMLMiniConfig:
    """What a build depends on. ``scale`` shrinks every domain's class counts (at least 2 per split), for tests."""

    seed: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise InvalidConfigError(f"scale must be in (0, 1], got {self.scale}")


@dataclass(frozen=True)
class ClassPlan:
    """One class of the built benchmark: where it comes from, its global label, and the role of each of its images."""

    domain: str
    key: str
    label: int
    split: str
    roles: tuple[str, ...]


def _split_classes(domain: DomainSpec, config: UMLMiniConfig, index: int) -> dict[str, list[str]]:
    """Draw the domain's train, validation and test classes, disjoint, from a generator seeded by (seed, domain).

    The training side (train + validation) is drawn first and the validation classes are its last ones: carved from
    the training classes, as a practitioner would hold out part of the data they may train on.
    """
    counts = {split: max(2, round(domain.size(split).classes * config.scale)) for split in SPLITS}
    wanted = sum(counts.values())
    rng = np.random.default_rng([config.seed, index])
    if domain.kind == "fashion":
        keys = [str(i) for i in rng.choice(FASHION_TRAIN_SIZE, size=wanted, replace=False)]
    else:
        keys = [domain.classes[i] for i in rng.permutation(len(domain.classes))[:wanted]]
    n_train, n_validation = counts[TRAIN_SPLIT], counts[VALIDATION_SPLIT]
    return {
        TRAIN_SPLIT: keys[:n_train],
        VALIDATION_SPLIT: keys[n_train : n_train + n_validation],
        TEST_SPLIT: keys[n_train + n_validation :],
    }


def _roles(domain: DomainSpec, split: str) -> tuple[str, ...]:
    """Training rows; else leave-one-out for every domain but fashion, whose products are split into query and gallery
    views (In-shop). Validation rows have the test split's roles, so the two are scored the same way."""
    per_class = domain.size(split).per_class
    if split == TRAIN_SPLIT:
        return (ROLE_TRAIN,) * per_class
    if domain.kind == "fashion":
        half = per_class // 2
        return (ROLE_QUERY,) * half + (ROLE_GALLERY,) * (per_class - half)
    return (ROLE_BOTH,) * per_class


def plan_uml_mini(config: UMLMiniConfig = UMLMiniConfig()) -> list[ClassPlan]:
    """Every class of the benchmark with its label and image roles, without rendering anything.

    Labels follow the shared schema: training classes ``0 .. T-1``, then validation, then test classes, each split in
    blocks in :data:`DOMAINS` order, so training labels index loss proxies directly and no label is shared across
    domains or splits.
    """
    drawn = [_split_classes(domain, config, index) for index, domain in enumerate(DOMAINS)]
    plans: list[ClassPlan] = []
    for split in SPLITS:
        for domain, keys_by_split in zip(DOMAINS, drawn):
            keys, roles = keys_by_split[split], _roles(domain, split)
            first_label = len(plans)
            plans.extend(ClassPlan(domain.name, key, first_label + i, split, roles) for i, key in enumerate(keys))
    return plans


class _Renderer:
    """Turns one planned class into its images; holds the loaded sources so each is read once per build."""

    def __init__(self, config: UMLMiniConfig, sources: SourceFolders) -> None:
        self.config = config
        self.sources = sources
        self.emoji_font = emoji_font(sources)
        self.domains = {d.name: d for d in DOMAINS}
        digit_labels = load_digits()[1]
        # per split, per digit: the handwritten digit images its numbers may be composed from, each split its own
        self.digits = {
            split: {d: pool[digit_labels[pool] == d] for d in range(10)} for split, pool in digit_pools().items()
        }

    def images(self, plan: ClassPlan) -> list:
        domain = self.domains[plan.domain]
        class_rng = np.random.default_rng([self.config.seed, plan.label, 1])
        rngs = [np.random.default_rng([self.config.seed, plan.label, 2, i]) for i in range(len(plan.roles))]
        if domain.kind == "glyphs":
            faces = faces_drawing(GLYPH_ALPHABETS[domain.name], self.sources)
            picks = class_rng.choice(len(faces), size=len(rngs), replace=len(rngs) > len(faces))
            return [render_glyph(plan.key, faces[f], rng) for f, rng in zip(picks, rngs)]
        if domain.kind == "emoji":
            bitmap = emoji_bitmap(plan.key, self.emoji_font)
            if bitmap is None:
                raise DatasetLayoutError(f"the Noto Color Emoji at {self.emoji_font} does not draw {plan.key!r}")
            return [render_emoji(bitmap, rng) for rng in rngs]
        if domain.kind == "fashion":
            garment = load_fashion("train", self.sources)[0][int(plan.key)]
            return [render_fashion_view(garment, rng) for rng in rngs]
        images, by_digit = load_digits()[0], self.digits[plan.split]
        return [render_number([images[rng.choice(by_digit[int(c)])] for c in plan.key], rng) for rng in rngs]


def build_uml_mini(
    config: UMLMiniConfig = UMLMiniConfig(), sources: SourceFolders | None = None, install_missing: bool = False
):
    """Render the whole benchmark into a ``DatasetDict`` (no cache; see :func:`load_or_build_uml_mini`).

    ``sources`` says where the fonts and Fashion-MNIST are read (default: the user's folders named by the environment
    variables, else the Debian packages). Missing sources are detected first and reported with the ``apt-get install``
    line that provides them, or the files a user's folder lacks. The same files give the same dataset, wherever they
    lie. Returns the dataset and the plan it was rendered from.
    """
    sources = SourceFolders.from_environment() if sources is None else sources
    require_sources(required_packages(), sources, install_missing, alphabets=GLYPH_ALPHABETS, fashion_parts=("train",))
    for name, alphabet in GLYPH_ALPHABETS.items():
        faces_for(name, alphabet, sources)
    plans = plan_uml_mini(config)
    renderer = _Renderer(config, sources)
    features = row_features()
    columns: dict[str, dict[str, list]] = {s: {c: [] for c in features} for s in SPLITS}
    for plan in plans:
        column = columns[plan.split]
        column[IMAGE_COLUMN].extend(renderer.images(plan))
        column[LABEL_COLUMN].extend([plan.label] * len(plan.roles))
        column[DATASET_COLUMN].extend([plan.domain] * len(plan.roles))
        column[ROLE_COLUMN].extend(plan.roles)
    dataset = datasets.DatasetDict({s: datasets.Dataset.from_dict(c, features=features) for s, c in columns.items()})
    return dataset, plans


def summarize(plans: Sequence[ClassPlan]) -> dict:
    """Per domain and split: classes and images; plus totals and the imbalance ratio (largest / smallest train set).

    Computed from the plan, so it describes a build without rendering it, and agrees with the built rows.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for plan in plans:
        counts[plan.domain, f"{plan.split}_classes"] += 1
        counts[plan.domain, f"{plan.split}_images"] += len(plan.roles)
    fields = tuple(f"{split}_{what}" for split in SPLITS for what in ("classes", "images"))
    rows = {d.name: {**{f: counts[d.name, f] for f in fields}, "cue": d.cue} for d in DOMAINS}
    totals = {f: sum(row[f] for row in rows.values()) for f in fields}
    train_sizes = [row["train_images"] for row in rows.values()]
    return {"domains": rows, "totals": totals, "imbalance_ratio": max(train_sizes) / min(train_sizes)}


def format_summary(summary: dict) -> str:
    """The summary as the table the command prints."""
    names = {TRAIN_SPLIT: "train", VALIDATION_SPLIT: "val", TEST_SPLIT: "test"}
    header = f"{'domain':<10}" + "".join(f"{names[s] + ' ' + w:>10}" for s in SPLITS for w in ("cls", "img")) + "  cue"
    lines = [header, "-" * len(header)]
    for name, row in [*summary["domains"].items(), ("total", {**summary["totals"], "cue": ""})]:
        counts = "".join(f"{row[f'{s}_{w}']:>10}" for s in SPLITS for w in ("classes", "images"))
        lines.append(f"{name:<10}{counts}  {row['cue']}")
    lines.append(f"imbalance (largest / smallest train domain, images): {summary['imbalance_ratio']:.1f}x")
    return "\n".join(lines)


def _manifest(config: UMLMiniConfig, plans: Sequence[ClassPlan], sources: SourceFolders) -> dict:
    """What the build is (version, config: the keys a cached build is matched by), what it holds, and where its
    sources were read (only a record: the same files give the same build wherever they lie)."""
    return {
        "builder_version": BUILDER_VERSION,
        "config": asdict(config),
        "summary": summarize(plans),
        "class_names": {str(p.label): f"{p.domain}:{p.key}" for p in plans},
        "sources": sources.describe(),
    }


UML_MINI_LAYOUT = OwnedLayout.of("a UML-mini build", signature=[MANIFEST], others=["dataset_dict.json", *SPLITS])


def read_manifest(folder: str) -> dict | None:
    """The manifest of the UML-mini build in ``folder``; ``None`` where there is none or it cannot be read."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def build_command(folder: str, config: UMLMiniConfig = UMLMiniConfig(), force: bool = False) -> str:
    """The command line that (re)builds ``folder`` with ``config``."""
    options = "".join(
        f" --{name} {value}" for name, value in asdict(config).items() if value != getattr(UMLMiniConfig(), name)
    )
    return f"python -m peft_puma.data.uml_mini --output_dir {folder}{options}{' --force' if force else ''}"


def _is_complete(folder: str, manifest: dict | None) -> bool:
    return manifest is not None and os.path.isfile(os.path.join(folder, "dataset_dict.json"))


def _describe(manifest: dict) -> str:
    config = manifest.get("config") or {}
    return f"seed {config.get('seed')}, scale {config.get('scale')}, builder version {manifest.get('builder_version')}"


def load_or_build_uml_mini(
    out: str,
    config: UMLMiniConfig = UMLMiniConfig(),
    force: bool = False,
    sources: SourceFolders | None = None,
    install_missing: bool = False,
) -> tuple[datasets.DatasetDict, dict, bool]:
    """The benchmark of ``config`` in ``out``: loaded when ``out`` holds that build, else built there (from
    ``sources``, see :func:`build_uml_mini`; a build is reused whatever sources it was read from).

    Returns ``(dataset, manifest, was_cached)``. ``out`` may be new, empty, or hold a UML-mini build; a build of
    another seed, scale or builder version is replaced only with ``force`` (an incomplete one always). Anything else
    in ``out`` is refused (:class:`~peft_puma.errors.ForeignContentError`) before any work. A fresh build is written
    beside ``out`` and moved into place, so an interrupted build never removes the previous complete one.
    """
    owned = UML_MINI_LAYOUT.is_owned(out)
    manifest = read_manifest(out) if owned else None
    if owned and _is_complete(out, manifest) and not force:
        wanted = {"builder_version": BUILDER_VERSION, "config": asdict(config)}
        if {key: manifest.get(key) for key in wanted} == wanted:
            return datasets.load_from_disk(out), manifest, True
        raise ForeignContentError(
            f"{out} holds a UML-mini build of {_describe(manifest)}, not the one asked for (seed {config.seed}, scale "
            f"{config.scale}, builder version {BUILDER_VERSION}). Nothing was touched: replace it with "
            f"`{build_command(out, config, force=True)}`, or choose another --output_dir."
        )
    sources = SourceFolders.from_environment() if sources is None else sources
    dataset, plans = build_uml_mini(config, sources, install_missing)
    manifest = _manifest(config, plans, sources)
    staging = make_staging_folder(out)
    try:
        dataset.save_to_disk(staging)
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1, ensure_ascii=False)
        move_into_place(staging, out, UML_MINI_LAYOUT)
    except BaseException:
        discard_staging(staging)
        raise
    return datasets.load_from_disk(out), manifest, False


def open_uml_mini(folder: str, **build_options) -> tuple[datasets.DatasetDict, dict]:
    """UML-mini as built in ``folder``, whatever its seed and scale (``manifest["config"]`` says which); where
    ``folder`` does not exist or is empty, the default build is made there first.

    Used by training, evaluation and embedding, which must describe the data the user built. A build of an older
    builder version, an incomplete build, or a folder that holds no build is an error that names the command
    rebuilding it; nothing is deleted.
    """
    if not UML_MINI_LAYOUT.is_owned(folder):
        dataset, manifest, _ = load_or_build_uml_mini(folder, **build_options)
        return dataset, manifest
    manifest = read_manifest(folder)
    if not _is_complete(folder, manifest):
        raise DatasetLayoutError(
            f"{folder} holds an incomplete UML-mini build (its {MANIFEST} or dataset_dict.json is missing or "
            f"unreadable). Rebuild it with `{build_command(folder, force=True)}` (add the --seed and --scale it had)."
        )
    config = UMLMiniConfig(**manifest.get("config", {}))
    if manifest.get("builder_version") != BUILDER_VERSION:
        raise DatasetLayoutError(
            f"{folder} holds a UML-mini build of builder version {manifest.get('builder_version')}; this version of "
            f"peft_puma reads version {BUILDER_VERSION}, whose images differ. Rebuild it with "
            f"`{build_command(folder, config, force=True)}`."
        )
    return datasets.load_from_disk(folder), manifest


def provenance(folder: str, manifest: dict) -> dict:
    """What a run records about the UML-mini build it used."""
    return {"uml_mini_dir": folder, "builder_version": manifest.get("builder_version"), **manifest.get("config", {})}
