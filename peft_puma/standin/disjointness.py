"""The rule that keeps the stand-in's pretraining classes apart from UML-mini's, in every form a reviewer could name.

A pretraining class that *is* a benchmark class under another spelling (the number ``007`` and UML-mini's ``07``) or
looks like one (an Armenian ``Օ`` and a Latin ``O``, a small red triangle and UML-mini's red triangle) would give the
frozen backbone a head start on the benchmark that ImageNet never gave the paper's ViT. A pool class conflicts with a
UML-mini class when (docs/data.md, "Disjoint from UML-mini, by rule"):

1. **value**: both keys are made of digits and have the same integer value (``7``, ``07`` and ``007`` are one number);
2. **code point**: they share a code point after compatibility decomposition (NFKD) and case folding, ignoring the
   emoji presentation selector, the zero-width joiner and skin-tone modifiers;
3. **confusable glyph**: the pool class is one character and Unicode's confusables list (UTS #39, as shipped by
   ``confusable-homoglyphs``) names it confusable with a UML-mini letter, in either direction;
4. **emoji family**: the pool emoji's Unicode name holds one of :data:`EMOJI_FAMILIES`, the shapes and hands UML-mini's
   emoji classes are made of; an emoji without a name in Python's Unicode database cannot be judged and conflicts;
5. **emoji image**: drawn at 24 px on mid-grey, the two emoji are closer than :data:`EMOJI_IMAGE_DISTANCE` (RMS over
   RGB in [0, 1]): look-alikes whose names differ (a grey fog square and the white square, a stop sign and the red
   circle, a new moon and the black circle).

Fashion is exempt: the pool's classes are Fashion-MNIST's ten categories on its ``t10k`` file, UML-mini's are single
products of its ``train`` file (instance retrieval), so no pool class is a UML-mini class. The pool is built from the
classes this rule admits (:mod:`.pool`), and :func:`overlap_with_uml_mini` re-checks any list of class names.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.uml_mini import DOMAINS, EMOJI_CLASSES
from ..data.uml_mini.render import emoji_bitmap
from ..data.uml_mini.sources import EMOJI_FONT

EMOJI_FAMILIES: dict[str, str] = {
    "HEART": "HEART", "CIRCLE": "CIRCLE", "SQUARE": "SQUARE", "DIAMOND": "DIAMOND", "TRIANGLE": "TRIANGLE",
    "BOOK": "BOOK", "LEDGER": "BOOK",  # the coloured shapes and books
    "HAND": "HAND", "FINGER": "FINGER", "THUMB": "THUMB", "FIST": "FIST", "PALM": "HAND", "INDEX": "INDEX",
    "CLAP": "CLAP",  # the gestures
}  # fmt: skip
"""Words of Unicode emoji names (matched inside words, so NOTEBOOK and HANDS count), each with the word of the
UML-mini class names of its family: an emoji whose name holds one is a member of a shape or hand family UML-mini's
emoji classes are drawn from."""
EMOJI_IMAGE_DISTANCE = 0.10
"""Below this RMS distance (24 px, mid-grey background, RGB in [0, 1]) two emoji are look-alikes. UML-mini's own
distinct emoji lie further apart than this except for skin tones of one gesture, which the family rule covers."""
_IGNORED = {"\ufe0f", "\u200d", *(chr(c) for c in range(0x1F3FB, 0x1F400))}  # presentation, joiner, skin tones
_KINDS_CHECKED = ("glyphs", "emoji", "numbers")


@dataclass(frozen=True)
class Overlap:
    """One conflict: a pool class (``source:key``), the UML-mini class (``domain:key``) it meets, and which rule."""

    pool_class: str
    uml_mini_class: str
    rule: str

    def __str__(self) -> str:
        return f"{self.pool_class} meets {self.uml_mini_class} ({self.rule})"


def _uml_mini_classes() -> list[tuple[str, str, str]]:
    """(domain, kind, key) of every UML-mini class the rule compares against: all of them, train, validation, test."""
    return [(d.name, d.kind, key) for d in DOMAINS if d.kind in _KINDS_CHECKED for key in d.classes]


def _code_points(key: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", key).casefold()
    return {char for char in folded if char not in _IGNORED and not unicodedata.combining(char)} | (set(key) - _IGNORED)


@functools.lru_cache(maxsize=1)
def _confusables() -> dict[str, set[str]]:
    """Unicode's confusables (UTS #39) as character -> the single characters it may be taken for, both directions."""
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[str, set[str]] = {}
    for char, entries in confusables_data.items():
        for entry in entries:
            other = entry["c"].strip("\u200e\u200f")
            if len(other) == 1:
                table.setdefault(char, set()).add(other)
                table.setdefault(other, set()).add(char)
    return table


def _emoji_name(sequence: str) -> str | None:
    """The Unicode name of the emoji's first code point (its base: tones and selectors follow it); None if unknown."""
    return unicodedata.name(sequence[0], None)


def _emoji_pixels(sequence: str, font: str) -> np.ndarray | None:
    bitmap = emoji_bitmap(sequence, font)
    if bitmap is None:
        return None
    side = 24
    scale = side / max(bitmap.size)
    sprite = bitmap.resize(
        (max(1, round(bitmap.width * scale)), max(1, round(bitmap.height * scale))), Image.Resampling.LANCZOS
    )
    canvas = Image.new("RGBA", (side, side), (128, 128, 128, 255))
    canvas.alpha_composite(sprite, ((side - sprite.width) // 2, (side - sprite.height) // 2))
    return np.asarray(canvas.convert("RGB"), dtype=np.float64) / 255.0


@functools.lru_cache(maxsize=4)
def _uml_mini_emoji_pixels(font: str) -> tuple[tuple[str, np.ndarray], ...]:
    drawn = ((key, _emoji_pixels(key, font)) for key in EMOJI_CLASSES)
    return tuple((key, pixels) for key, pixels in drawn if pixels is not None)


def conflicts(source: str, key: str, font: str = EMOJI_FONT) -> list[Overlap]:
    """Every UML-mini class the pool class ``source:key`` conflicts with, by the rules of this module's docstring."""
    if source == "fashion":
        return []
    name, found = f"{source}:{key}", []
    points = _code_points(key)
    confusable = _confusables().get(key, set()) if len(key) == 1 else set()  # a glyph class: one character
    for domain, kind, uml_key in _uml_mini_classes():
        uml_name = f"{domain}:{uml_key}"
        if key.isdigit() and uml_key.isdigit() and int(key) == int(uml_key):
            found.append(Overlap(name, uml_name, "same number"))
        elif kind != "numbers" and points & _code_points(uml_key):
            found.append(Overlap(name, uml_name, "shared code point"))
        elif kind == "glyphs" and uml_key in confusable:
            found.append(Overlap(name, uml_name, "Unicode confusable"))
    if source == "emoji":
        found.extend(_emoji_conflicts(name, key, font))
    return found


def _emoji_conflicts(name: str, key: str, font: str) -> list[Overlap]:
    unicode_name = _emoji_name(key)
    if unicode_name is None:
        return [Overlap(name, "emoji:*", "no Unicode name to judge it by")]
    found = [
        Overlap(name, f"emoji:{_first_of_family(family)}", f"family {word}")
        for word, family in EMOJI_FAMILIES.items()
        if word in unicode_name
    ]
    pixels = _emoji_pixels(key, font)
    if pixels is not None:
        for uml_key, uml_pixels in _uml_mini_emoji_pixels(font):
            distance = float(np.sqrt(np.mean((pixels - uml_pixels) ** 2)))
            if distance < EMOJI_IMAGE_DISTANCE:
                found.append(Overlap(name, f"emoji:{uml_key}", f"image distance {distance:.3f}"))
    return found


def _first_of_family(family: str) -> str:
    return next(key for key in EMOJI_CLASSES if family in (_emoji_name(key) or ""))


def admitted(source: str, key: str, font: str = EMOJI_FONT) -> bool:
    """Whether the rule lets ``source:key`` into the pretraining pool."""
    return not conflicts(source, key, font)


def overlap_with_uml_mini(class_names: list[str], font: str = EMOJI_FONT) -> list[Overlap]:
    """Every conflict of the pool classes ``class_names`` (``source:key``) with UML-mini's classes; must be empty."""
    return [overlap for name in class_names for overlap in conflicts(*name.split(":", 1), font=font)]
