"""Where UML-mini's raw material comes from: Debian packages and scikit-learn, or a user's own copies; found, checked
and loaded offline.

UML-mini (see :mod:`peft_puma.data.uml_mini`) is built only from material a fresh machine can install from public
package registries, so the benchmark runs where the paper's datasets and pretrained weights cannot be downloaded:

- typefaces from Debian font packages (glyph domains; scripts as domains, characters as classes, faces as instances),
- Noto Color Emoji (``fonts-noto-color-emoji``),
- Fashion-MNIST (``dataset-fashion-mnist``: the Zalando idx files),
- scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: shipped inside the wheel, no download).

Each Debian source is known by one file its package installs (a *sentinel*), so a missing package is detected before
any rendering starts and the error names the exact ``apt-get install`` line to run. All paths are taken relative to a
``root`` (``/`` normally) so that tests can point at an empty tree and see that error.

Installing needs root. Without it (or on another system) a user points at their own copies instead
(:class:`SourceFolders`: ``--fonts_dir`` / ``--fashion_mnist_dir``, or the environment variables
:data:`FONTS_DIR_VARIABLE` / :data:`FASHION_MNIST_DIR_VARIABLE`, which a build started by ``train`` reads too). The
fonts are found there by file name (:mod:`.faces`), so the same files give the same benchmark.
"""

from __future__ import annotations

import filecmp
import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import ImageFont

from ...errors import DatasetLayoutError, PackageInstallError
from .faces import FACE_ALPHABETS


@dataclass(frozen=True)
class DebianSource:
    """One Debian package UML-mini reads and the file that proves it is installed (licences: docs/uml_mini.md)."""

    package: str
    sentinel: str  # absolute path (below ``root``) of one file the package installs


FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/truetype/freefont",
    "/usr/share/fonts/truetype/liberation2",
    "/usr/share/fonts/truetype/cmu",
    "/usr/share/fonts/opentype/urw-base35",
    "/usr/share/fonts/truetype/noto",
)
"""Folders whose faces make up the typeface pool. Faces are then filtered by what characters they really draw."""

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
EMOJI_PACKAGE = "fonts-noto-color-emoji"
FASHION_PACKAGE = "dataset-fashion-mnist"

SOURCES: tuple[DebianSource, ...] = (
    DebianSource("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    DebianSource("fonts-dejavu-extra", "/usr/share/fonts/truetype/dejavu/DejaVuSans-ExtraLight.ttf"),
    DebianSource("fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeSans.ttf"),
    DebianSource("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"),
    DebianSource("fonts-cmu", "/usr/share/fonts/truetype/cmu/cmunrm.ttf"),
    DebianSource("fonts-urw-base35", "/usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf"),
    DebianSource("fonts-noto-core", "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),
    DebianSource(EMOJI_PACKAGE, EMOJI_FONT),
    DebianSource(FASHION_PACKAGE, f"{FASHION_DIR}/train-images-idx3-ubyte.gz"),
)
FONT_PACKAGES: tuple[str, ...] = (
    "fonts-dejavu-core", "fonts-dejavu-extra", "fonts-freefont-ttf", "fonts-liberation2", "fonts-cmu",
    "fonts-urw-base35", "fonts-noto-core",
)  # fmt: skip
"""The packages whose faces make up the glyph domains' typeface pool (the faces in :data:`FONT_DIRS`)."""
APT_INSTALL = "apt-get install -y --no-install-recommends"

FONTS_DIR_VARIABLE = "PEFT_PUMA_FONTS_DIR"
FASHION_MNIST_DIR_VARIABLE = "PEFT_PUMA_FASHION_MNIST_DIR"
FASHION_FILES: dict[str, tuple[str, str]] = {
    part: (f"{part}-images-idx3-ubyte.gz", f"{part}-labels-idx1-ubyte.gz") for part in ("train", "t10k")
}
"""Fashion-MNIST's files per part, named as on its GitHub release and in ``dataset-fashion-mnist``."""
OWN_COPIES_DOC = 'docs/uml_mini.md, "Without root: your own copies"'


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _folder(path: str | None) -> str | None:
    return None if path in (None, "") else os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class SourceFolders:
    """Where a build reads its raw material: the Debian packages' paths below ``root`` by default; a user's own copy
    of the fonts (``fonts_dir``: any folder tree holding the face files, found by name) or of Fashion-MNIST
    (``fashion_mnist_dir``: a folder holding the release's gz files) in their place where given.

    Hashable, so the loaders below cache per source. Paths are made absolute, so a cache entry and the manifest name
    one folder whatever the working directory was.
    """

    root: str = "/"
    fonts_dir: str | None = None
    fashion_mnist_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fonts_dir", _folder(self.fonts_dir))
        object.__setattr__(self, "fashion_mnist_dir", _folder(self.fashion_mnist_dir))

    @classmethod
    def from_environment(cls, fonts_dir: str | None = None, fashion_mnist_dir: str | None = None) -> SourceFolders:
        """The folders given (command-line options), else those of :data:`FONTS_DIR_VARIABLE` and
        :data:`FASHION_MNIST_DIR_VARIABLE`, else the Debian paths: how a command, and a build that ``train`` starts,
        finds a user's own copies."""
        return cls(
            fonts_dir=fonts_dir or os.environ.get(FONTS_DIR_VARIABLE) or None,
            fashion_mnist_dir=fashion_mnist_dir or os.environ.get(FASHION_MNIST_DIR_VARIABLE) or None,
        )

    def describe(self) -> dict[str, str]:
        """Where each source was read (the build's manifest keeps it; it does not enter any equality check)."""
        return {
            "fonts": self.fonts_dir or f"Debian packages ({_under(self.root, '/usr/share/fonts')})",
            "fashion_mnist": self.fashion_mnist_dir
            or f"Debian package {FASHION_PACKAGE} ({_under(self.root, FASHION_DIR)})",
        }

    def packages_replaced(self) -> set[str]:
        """The Debian packages whose files come from the user's own folders instead."""
        fonts = {*FONT_PACKAGES, EMOJI_PACKAGE} if self.fonts_dir is not None else set()
        return fonts | ({FASHION_PACKAGE} if self.fashion_mnist_dir is not None else set())


DEBIAN = SourceFolders()
"""The Debian packages' paths on this machine."""


def missing_packages(packages: Iterable[str], root: str = "/") -> list[str]:
    """The packages among ``packages`` whose sentinel file is absent below ``root``, in :data:`SOURCES` order."""
    wanted = set(packages)
    unknown = wanted - {s.package for s in SOURCES}
    if unknown:
        raise DatasetLayoutError(f"unknown UML-mini sources {sorted(unknown)}; known: {[s.package for s in SOURCES]}")
    return [s.package for s in SOURCES if s.package in wanted and not os.path.isfile(_under(root, s.sentinel))]


def install_command(packages: Sequence[str]) -> str:
    """The exact ``apt-get install`` line that installs ``packages``."""
    return f"{APT_INSTALL} {' '.join(packages)}"


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def privileged_install_command(packages: Sequence[str]) -> str:
    """What the messages tell a user to run: the package lists refreshed, then the install, with ``sudo`` unless this
    process already runs as root (a container's root often has no ``sudo``)."""
    sudo = "" if _is_root() else "sudo "
    return f"{sudo}apt-get update && {sudo}{install_command(packages)}"


def _own_copies_hint(packages: Iterable[str], lead: str = "or build from your own copies") -> str:
    """How to build without installing: the option (and variable) that replaces each missing package."""
    packages = set(packages)
    options = []
    if packages & {*FONT_PACKAGES, EMOJI_PACKAGE}:
        options.append(f"--fonts_dir DIR (a folder holding the fonts' files; or {FONTS_DIR_VARIABLE})")
    if FASHION_PACKAGE in packages:
        options.append(f"--fashion_mnist_dir DIR (Fashion-MNIST's gz files; or {FASHION_MNIST_DIR_VARIABLE})")
    return f"{lead}: {' and '.join(options)}, see {OWN_COPIES_DOC}" if options else f"{lead}: see {OWN_COPIES_DOC}"


def require_packages(packages: Iterable[str], root: str = "/", install_missing: bool = False) -> None:
    """Fail early, naming the ``apt-get install`` line, when a Debian source is missing; or install it when asked.

    ``install_missing`` runs ``apt-get update`` and the install line (it needs root and Debian's registry); after it,
    the sentinels are checked again so a failed install is reported, not discovered later as a rendering error. Every
    way the install can fail (no ``apt-get``, not root, apt exiting non-zero) is one :class:`PackageInstallError`
    naming the command to run with privileges and the options that avoid installing.
    """
    missing = missing_packages(packages, root)
    if not missing:
        return
    if install_missing and root == "/":
        _apt_install(missing)
        still = missing_packages(packages, root)
        if still:
            raise PackageInstallError(
                f"apt-get installed {', '.join(missing)}, yet the files UML-mini reads from "
                f"{', '.join(still)} are not where Debian puts them "
                f"({'; '.join(s.sentinel for s in SOURCES if s.package in still)}): "
                f"{_own_copies_hint(still)}."
            )
        return
    raise DatasetLayoutError(
        f"UML-mini needs Debian packages that are not installed: {', '.join(missing)}. Install them with "
        f"`{privileged_install_command(missing)}` (or run python -m peft_puma.data.uml_mini with --install_missing "
        f"as root), {_own_copies_hint(missing)}."
    )


def _apt_install(packages: list[str]) -> None:
    """``apt-get update`` then the install line, as root; every failure is one line naming what to run instead.

    Not-root and no-``apt-get`` are told before apt runs; any other failure (offline, a package this distribution
    does not have, apt's lock held) is apt's own ``E:`` lines, kept in the message. apt's progress goes to stdout.
    """
    command = privileged_install_command(packages)
    missing = f"UML-mini's sources missing: {', '.join(packages)}"
    if shutil.which("apt-get") is None:
        raise PackageInstallError(
            f"--install_missing installs with apt-get (Debian, Ubuntu), which this system does not have; {missing}. "
            f"{_own_copies_hint(packages, 'Build from your own copies of their files instead')}."
        )
    if not _is_root():
        raise PackageInstallError(
            f"--install_missing runs apt-get, which needs root, and this command runs as {_user()}, so nothing was "
            f"installed; {missing}. Run `{command}` and then this command without --install_missing, "
            f"{_own_copies_hint(packages)}."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    warnings = []  # apt's stderr of the steps that worked: shown once all worked, else summed up in the error
    for step in (["apt-get", "update"], [*APT_INSTALL.split(), *packages]):
        try:
            result = subprocess.run(step, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
        except OSError as error:
            raise PackageInstallError(
                f"`{' '.join(step)}` could not be started ({error.strerror or error}); {missing}. Run `{command}` "
                f"yourself, {_own_copies_hint(packages)}."
            ) from error
        if result.returncode == 0:
            warnings.append(result.stderr)
            continue
        fetch_failed = any("Failed to fetch" in text for text in warnings)
        offline = " (apt-get update could not reach the package servers: offline?)" if fetch_failed else ""
        raise PackageInstallError(
            f"`{' '.join(step)}` failed with exit status {result.returncode}: {_apt_errors(result.stderr)}{offline}; "
            f"{missing}. Run `{command}` once it can succeed, {_own_copies_hint(packages)}."
        )
    sys.stderr.write("".join(warnings))


def _apt_errors(stderr: str) -> str:
    """apt's ``E:`` lines (its errors), joined into one line; else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")] or lines[-1:] or ["(no message)"]
    text = " ".join(errors)
    return text if len(text) <= 400 else text[:397] + "..."


def _user() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


# --- a user's own copies ----------------------------------------------------------------------------------------------

EMOJI_FILE = os.path.basename(EMOJI_FONT)
FACE_FILES: frozenset[str] = frozenset(name for faces in FACE_ALPHABETS.values() for name in faces)


def faces_of(alphabet: str) -> set[str]:
    """The file names of the Debian faces that draw every letter of ``alphabet`` (a name of :mod:`.faces`)."""
    return {name for faces in FACE_ALPHABETS.values() for name, drawn in faces.items() if alphabet in drawn.split()}


def _not_a_folder(path: str, what: str, option: str, variable: str) -> DatasetLayoutError:
    return DatasetLayoutError(f"the {what} folder {path} ({option} or {variable}) is not a folder")


@cache
def font_files(fonts_dir: str) -> dict[str, str]:
    """File name -> path of every face file of :mod:`.faces` (and the emoji font) anywhere under ``fonts_dir``.

    Searched recursively, following links to folders (each folder once), in sorted order. Two different files of one
    name are refused: which one the build would draw in would be an accident of the search order.
    """
    if not os.path.isdir(fonts_dir):
        raise _not_a_folder(fonts_dir, "fonts", "--fonts_dir", FONTS_DIR_VARIABLE)
    wanted = FACE_FILES | {EMOJI_FILE}
    found: dict[str, str] = {}
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(fonts_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(set(files) & wanted):
            path = os.path.join(folder, name)
            if name in found and not filecmp.cmp(found[name], path, shallow=False):
                raise DatasetLayoutError(
                    f"the fonts folder {fonts_dir} holds two different files named {name}: {found[name]} and {path}; "
                    "keep the one the Debian package installs, so the build draws in a known face"
                )
            found.setdefault(name, path)
    return found


def missing_font_files(fonts_dir: str, alphabets: Iterable[str], emoji: bool) -> dict[str, list[str]]:
    """Per Debian package, the face files a build drawing ``alphabets`` (and emoji) needs that ``fonts_dir`` lacks."""
    needed = set().union(*(faces_of(alphabet) for alphabet in alphabets)) | ({EMOJI_FILE} if emoji else set())
    absent = needed - set(font_files(fonts_dir))
    by_package = {package: sorted(absent & set(faces)) for package, faces in FACE_ALPHABETS.items()}
    by_package[EMOJI_PACKAGE] = sorted(absent & {EMOJI_FILE})
    return {package: names for package, names in by_package.items() if names}


def require_sources(
    packages: Iterable[str],
    sources: SourceFolders = DEBIAN,
    install_missing: bool = False,
    *,
    alphabets: Iterable[str] = (),
    fashion_parts: Iterable[str] = (),
) -> None:
    """Check every source a build reads before it renders anything: the user's own folders (by file name) for what
    they replace, the Debian packages (:func:`require_packages`, installing them when asked) for the rest.

    ``packages`` are the Debian packages the build reads; ``alphabets`` (names of :mod:`.faces`) and
    ``fashion_parts`` (``"train"``, ``"t10k"``) say which files of them it needs, for the own folders' check.
    """
    packages = list(packages)
    if sources.fonts_dir is not None and set(packages) & {*FONT_PACKAGES, EMOJI_PACKAGE}:
        absent = missing_font_files(sources.fonts_dir, alphabets, EMOJI_PACKAGE in packages)
        if absent:
            listed = "; ".join(f"{package}: {', '.join(names)}" for package, names in absent.items())
            count = sum(len(names) for names in absent.values())
            raise DatasetLayoutError(
                f"the fonts folder {sources.fonts_dir} lacks {count} of the font files the build draws in (searched "
                f"by file name in every subfolder; the files of these Debian packages): {listed}"
            )
    if sources.fashion_mnist_dir is not None and FASHION_PACKAGE in packages:
        folder = sources.fashion_mnist_dir
        if not os.path.isdir(folder):
            raise _not_a_folder(folder, "Fashion-MNIST", "--fashion_mnist_dir", FASHION_MNIST_DIR_VARIABLE)
        names = [name for part in fashion_parts for name in FASHION_FILES[part]]
        absent_files = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
        if absent_files:
            raise DatasetLayoutError(
                f"the Fashion-MNIST folder {folder} lacks {', '.join(absent_files)} (the gz files of Fashion-MNIST's "
                "GitHub release, under these names, directly in that folder)"
            )
    replaced = sources.packages_replaced()
    require_packages([p for p in packages if p not in replaced], sources.root, install_missing)


# --- typefaces --------------------------------------------------------------------------------------------------------

_PROBE_SIZE = 24


@cache
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType face: loading dominates glyph rendering time, and every face is used for many glyphs."""
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.RAQM)


def draws_all(path: str, chars: str) -> bool:
    """Whether the face at ``path`` really draws every character (not its .notdef box, not nothing)."""
    try:
        font = load_font(path, _PROBE_SIZE)
    except OSError:  # a bitmap-only face (colour emoji) cannot be opened at an arbitrary size
        return False
    notdef = {bytes(font.getmask("\uffff")), bytes(font.getmask("\ue000"))}
    for char in chars:
        mask = font.getmask(char)
        data = bytes(mask)
        if mask.size[0] == 0 or data in notdef or not any(data):
            return False
    return True


@cache
def faces_drawing(chars: str, sources: SourceFolders = DEBIAN) -> tuple[str, ...]:
    """Every face that draws all of ``chars``, sorted by file name: the faces in :data:`FONT_DIRS` below the root, or
    where the user gave a fonts folder, the face files of :mod:`.faces` found there by name.

    Sorted by base name (not by full path) so that the pool, and therefore every sampled face, is the same on any
    machine with the same files, whatever order the file system lists them in and wherever they lie.
    """
    if sources.fonts_dir is not None:
        paths = [path for name, path in font_files(sources.fonts_dir).items() if name in FACE_FILES]
    else:
        paths = []
        for folder in FONT_DIRS:
            folder = _under(sources.root, folder)
            if os.path.isdir(folder):
                paths.extend(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".ttf", ".otf")))
    return tuple(p for p in sorted(paths, key=os.path.basename) if draws_all(p, chars))


def faces_for(alphabet: str, chars: str, sources: SourceFolders = DEBIAN) -> tuple[str, ...]:
    """:func:`faces_drawing` for a named alphabet of :mod:`.faces`, checked before a build draws from it.

    From the Debian folders at least one face must draw it. From a user's fonts folder, exactly the faces whose Debian
    copies draw it must: a copy of another version that draws more or less would change the typeface pool, and with
    it every image, while the build's manifest said nothing of it.
    """
    faces = faces_drawing(chars, sources)
    if sources.fonts_dir is None:
        if not faces:
            raise DatasetLayoutError(f"no installed typeface draws every {alphabet} letter; install {FONT_PACKAGES}")
        return faces
    expected, drawn = faces_of(alphabet), {os.path.basename(path) for path in faces}
    if drawn != expected:
        differences = [
            *(
                f"{font_files(sources.fonts_dir)[name]} draws every {alphabet} letter"
                for name in sorted(drawn - expected)
            ),
            *(f"{name} does not draw every {alphabet} letter" for name in sorted(expected - drawn)),
        ]
        raise DatasetLayoutError(
            f"the fonts under {sources.fonts_dir} are not the Debian packages' files UML-mini is drawn in: "
            f"{'; '.join(differences)}, unlike the Debian copy (another version of the file?); the images would "
            f"differ from the reference build. Use the files of the packages in {OWN_COPIES_DOC}"
        )
    return faces


def emoji_font(sources: SourceFolders = DEBIAN) -> str:
    """The path of Noto Color Emoji: the Debian one, or the file of that name in the user's fonts folder."""
    if sources.fonts_dir is not None:
        return font_files(sources.fonts_dir)[EMOJI_FILE]
    return _under(sources.root, EMOJI_FONT)


# --- Fashion-MNIST ----------------------------------------------------------------------------------------------------

FASHION_CATEGORIES: tuple[str, ...] = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip


def _read_idx(path: str) -> np.ndarray:
    """Read one gzipped idx file (the MNIST container format: magic, dimension sizes, then raw uint8)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@lru_cache(maxsize=2)
def load_fashion(part: str, sources: SourceFolders = DEBIAN) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``(N, 28, 28)`` uint8 and category labels ``(N,)``; ``part`` is ``"train"`` or ``"t10k"``.

    UML-mini draws its products from ``train`` only; the mini-ViT pretraining uses ``t10k``, so no image is shared.
    Read from the Debian package's folder, or from the user's Fashion-MNIST folder.
    """
    folder = sources.fashion_mnist_dir or _under(sources.root, FASHION_DIR)
    images, labels = (_read_idx(os.path.join(folder, name)) for name in FASHION_FILES[part])
    return images, labels.astype(np.int64)


# --- scikit-learn digits ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 bundled 8x8 handwritten digits (values 0..16) and their labels; shipped with scikit-learn."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def digit_pools() -> dict[str, np.ndarray]:
    """Split the digit images into four disjoint index pools: UML-mini ``train``, ``validation`` and ``test``, and the
    stand-in's ``pretrain``.

    The numbers of each split are composed from their own handwritten digit images, and the backbone's pretraining
    sees a fourth set, so no digit image appears in two of them. The split is fixed, whatever the seed of a build or of
    the pretraining, so that no pair of them can share a digit image. The images are disjoint, not their writers:
    scikit-learn's copy (the test part of UCI's optdigits, 1,797 images by 13 writers) carries no writer ids.
    """
    count = len(load_digits()[1])
    order = np.random.default_rng([0, 7]).permutation(count)
    quarter = count // 4
    names = ("train", "validation", "test")
    pools = {name: order[i * quarter : (i + 1) * quarter] for i, name in enumerate(names)}
    return {**pools, "pretrain": order[3 * quarter :]}
