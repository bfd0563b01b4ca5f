"""Pretraining material for UML-mini's stand-in backbone: the same kinds of sources, none of UML-mini's classes.

The paper freezes a ViT pretrained on ImageNet, which knows general visual features but was never trained for
retrieval on the benchmark's classes. The mini ViT (:mod:`peft_puma.backbones.mini_vit`) plays that part for UML-mini,
so its pretraining classes must be disjoint from every UML-mini class, train, validation and test, while still
teaching features that transfer (strokes, shapes, colour blobs, textures):

- ``symbols``: punctuation in every typeface that draws it (UML-mini's glyph domains are letters only);
- ``scripts``: letters of sixteen other scripts (Armenian, Georgian, Hebrew, Thai, Devanagari, Bengali, Tamil, Gujarati,
  Kannada, Telugu, Malayalam, Gurmukhi, Ethiopic, Khmer, Lao, Sinhala), in the faces that draw them, random colours
  as in UML-mini's glyph domains;
- ``emoji``: other emoji of the font's main blocks;
- ``fashion``: the 10 garment categories, on Fashion-MNIST's ``t10k`` file (UML-mini's products come from ``train``);
- ``numbers``: three-digit numbers 100-999 composed of handwritten digit images UML-mini never uses, as UML-mini
  composes its two-digit numbers 00-99 (so digit pairs and their order are learnable).

Every class passes the rule of :mod:`.disjointness` (no number of the same value, no shared code point, no Unicode
confusable, no letter of the same silhouette, no emoji of a UML-mini shape or hand family, drawing text, or of the
same silhouette): digits as classes, 51 letters (30 of them Armenian) and 447 of the font's 1,059 emoji are left out.
Symbols are not drawn in the faces that put pictures at their code points (Zapf Dingbats, Symbol).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.uml_mini import required_packages
from ..data.uml_mini.render import emoji_bitmap, render_emoji, render_fashion_view, render_glyph, render_number
from ..data.uml_mini.sources import (
    EMOJI_FONT,
    FASHION_CATEGORIES,
    SourceFolders,
    digit_pools,
    emoji_font,
    faces_for,
    load_digits,
    load_fashion,
    require_sources,
)
from ..errors import InvalidConfigError
from .disjointness import SYMBOL_ENCODED_FACES, admitted

SYMBOLS = "0123456789&?@#$%*+=/<>[]{}()!;:"
"""The characters that choose the symbol typefaces (faces drawing all of them); the digits among them are no class."""


def _span(first: int, last: int) -> str:
    return "".join(chr(c) for c in range(first, last + 1))


OTHER_SCRIPTS: dict[str, str] = {
    "armenian": _span(0x531, 0x556) + _span(0x561, 0x586),
    "georgian": _span(0x10D0, 0x10FA),
    "hebrew": _span(0x5D0, 0x5EA),
    "thai": _span(0xE01, 0xE2E),
    "devanagari": _span(0x905, 0x939),
    "bengali": _span(0x985, 0x98C) + _span(0x995, 0x9A8) + _span(0x9AA, 0x9B0),
    "tamil": "அஆஇஈஉஊஎஏஐஒஓஔகஙசஞடணதநபமயரலவழளறன",  # the 12 vowels and 18 consonants (not one Unicode range)
    "gujarati": _span(0xA95, 0xAA8) + _span(0xAAA, 0xAB0),
    "kannada": _span(0xC95, 0xCA8) + _span(0xCAA, 0xCB3),
    "telugu": _span(0xC15, 0xC28) + _span(0xC2A, 0xC39),
    "malayalam": _span(0xD15, 0xD39),
    "gurmukhi": _span(0xA15, 0xA28) + _span(0xA2A, 0xA30),
    "ethiopic": _span(0x1200, 0x1248),
    "khmer": _span(0x1780, 0x17A2),
    "lao": "ກຂຄງຈຊຍດຕຖທນບປຜຝພຟມຢຣລວສຫອຮ",  # the 27 consonants of the modern alphabet (their range has gaps)
    "sinhala": _span(0xD9A, 0xDB1),
}
GLYPH_SOURCES: tuple[str, ...] = ("symbols", *OTHER_SCRIPTS)
"""Sources drawn like UML-mini's glyph domains: two random colours, so colour carries nothing about the class."""
EMOJI_BLOCKS: tuple[tuple[int, int], ...] = ((0x1F300, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF))


@dataclass(frozen=True)
class PoolSize:
    """How much of each source the pool renders (the defaults give about 21,000 images in about 12 s on 2 cores)."""

    symbol_instances: int = 48
    script_instances: int = 16
    emoji_classes: int = 300
    emoji_instances: int = 12
    fashion_images: int = 3000
    number_classes: int = 900
    number_views: int = 4

    def scaled(self, scale: float) -> PoolSize:
        """Every count times ``scale`` (at least 2 instances, 2 emoji classes, 10 images), for quick tests."""
        if not 0 < scale <= 1:
            raise InvalidConfigError(f"pool scale must be in (0, 1], got {scale}")
        return PoolSize(
            max(2, round(self.symbol_instances * scale)),
            max(2, round(self.script_instances * scale)),
            max(2, round(self.emoji_classes * scale)),
            max(2, round(self.emoji_instances * scale)),
            max(10, round(self.fashion_images * scale)),
            max(2, round(self.number_classes * scale)),
            max(2, round(self.number_views * scale)),
        )


@dataclass
class PretrainingPool:
    """Rendered pretraining images ``(N, 32, 32, 3)`` uint8, class ids ``(N,)``, and per class its source and key."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]  # "source:key", indexed by class id

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Classes and images per source (recorded next to the backbone)."""
        counts: dict[str, dict[str, int]] = {}
        sources = np.array([name.split(":", 1)[0] for name in self.class_names])
        for source in dict.fromkeys(sources):
            ids = np.flatnonzero(sources == source)
            counts[str(source)] = {"classes": len(ids), "images": int(np.isin(self.labels, ids).sum())}
        return counts

    def glyph_images(self) -> np.ndarray:
        """A boolean mask of the images of :data:`GLYPH_SOURCES` (the ones whose colours pretraining may redraw)."""
        glyph_class = np.array([name.split(":", 1)[0] in GLYPH_SOURCES for name in self.class_names])
        return glyph_class[self.labels]


def pretraining_emoji(count: int, seed: int, font: str = EMOJI_FONT) -> list[str]:
    """``count`` emoji the font draws that the disjointness rule admits, drawn by ``seed``."""
    candidates = [chr(c) for first, last in EMOJI_BLOCKS for c in range(first, last + 1) if not 0x1F3FB <= c <= 0x1F3FF]
    drawn = [char for char in candidates if emoji_bitmap(char, font) is not None and admitted("emoji", char, font)]
    picks = np.random.default_rng([seed, 11]).choice(len(drawn), size=min(count, len(drawn)), replace=False)
    return [drawn[i] for i in sorted(picks)]


def pretraining_numbers() -> list[str]:
    """The three-digit numbers the rule admits: 100-999 (``000``-``099`` are UML-mini's ``00``-``99`` by value)."""
    return [key for key in (f"{n:03d}" for n in range(1000)) if admitted("numbers", key)]


def glyph_classes(source: str, alphabet: str) -> str:
    """The characters of ``alphabet`` the rule admits as classes of ``source``."""
    return "".join(char for char in alphabet if admitted(source, char))


class _PoolWriter:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.images: list[Image.Image] = []
        self.labels: list[int] = []
        self.class_names: list[str] = []

    def add_class(self, name: str, images: list[Image.Image]) -> None:
        self.labels.extend([len(self.class_names)] * len(images))
        self.class_names.append(name)
        self.images.extend(images)

    def rngs(self, count: int) -> list[np.random.Generator]:
        """Independent generators for the next class's images (seeded by class id, so order-independent)."""
        return [np.random.default_rng([self.seed, 13, len(self.class_names), i]) for i in range(count)]

    def glyph_class(self, source: str, char: str, faces: tuple[str, ...], count: int) -> None:
        rngs = self.rngs(count)
        picks = rngs[0].choice(len(faces), size=count, replace=count > len(faces))
        self.add_class(f"{source}:{char}", [render_glyph(char, faces[f], rng) for f, rng in zip(picks, rngs)])


def _text_faces(faces: tuple[str, ...]) -> tuple[str, ...]:
    """The faces that draw characters as characters: not those drawing pictures at their code points."""
    return tuple(face for face in faces if os.path.basename(face) not in SYMBOL_ENCODED_FACES)


def build_pretraining_pool(
    seed: int = 0, size: PoolSize = PoolSize(), sources: SourceFolders | None = None
) -> PretrainingPool:
    """Render the whole pool (deterministic in ``seed``); raises with the ``apt-get`` line if a source is missing.

    ``sources`` as for UML-mini (default: the folders of the environment variables, else the Debian packages); the
    same files give the same pool.
    """
    sources = SourceFolders.from_environment() if sources is None else sources
    alphabets = {"symbols": SYMBOLS, **OTHER_SCRIPTS}
    require_sources(required_packages(), sources, alphabets=alphabets, fashion_parts=("t10k",))
    faces = {name: _text_faces(faces_for(name, alphabet, sources)) for name, alphabet in alphabets.items()}
    writer = _PoolWriter(seed)
    for source, alphabet in alphabets.items():
        for char in glyph_classes(source, alphabet):
            count = size.symbol_instances if source == "symbols" else size.script_instances
            writer.glyph_class(source, char, faces[source], count)
    font = emoji_font(sources)
    for sequence in pretraining_emoji(size.emoji_classes, seed, font):
        bitmap = emoji_bitmap(sequence, font)
        writer.add_class(f"emoji:{sequence}", [render_emoji(bitmap, rng) for rng in writer.rngs(size.emoji_instances)])
    garments, categories = load_fashion("t10k", sources)
    chosen = np.random.default_rng([seed, 17]).choice(len(garments), size=size.fashion_images, replace=False)
    for category, name in enumerate(FASHION_CATEGORIES):
        members = chosen[categories[chosen] == category]
        rngs = writer.rngs(len(members))
        writer.add_class(f"fashion:{name}", [render_fashion_view(garments[i], rng) for i, rng in zip(members, rngs)])
    digits, digit_labels = load_digits()
    pool = digit_pools()["pretrain"]
    by_digit = {digit: pool[digit_labels[pool] == digit] for digit in range(10)}
    allowed = pretraining_numbers()
    numbers = np.random.default_rng([seed, 19]).choice(len(allowed), size=min(size.number_classes, len(allowed)),
                                                       replace=False)  # fmt: skip
    for key in (allowed[i] for i in sorted(numbers)):
        rngs = writer.rngs(size.number_views)
        views = [render_number([digits[rng.choice(by_digit[int(c)])] for c in key], rng) for rng in rngs]
        writer.add_class(f"numbers:{key}", views)
    images = np.stack([np.asarray(image, dtype=np.uint8) for image in writer.images])
    return PretrainingPool(images, np.asarray(writer.labels, dtype=np.int64), writer.class_names)
