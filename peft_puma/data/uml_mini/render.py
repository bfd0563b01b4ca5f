"""Rendering one UML-mini image: a glyph in a typeface, an emoji, a view of a garment, a handwritten number.

Every function takes its own ``numpy.random.Generator``, so an image depends only on the seed it was given and not on
what was rendered before it (the builder seeds one generator per image). Images are drawn at twice the final size and
downsampled with a Lanczos filter, which gives anti-aliased 32x32 RGB images from 8x8 digits and hinted glyphs alike.

What varies inside a class, and what is kept, is the point of each domain (see docs/uml_mini.md):

- glyphs: the typeface, the size (a little), position, tilt, and the foreground and background colours, which are drawn
  at random: colour is a nuisance here. The baseline is fixed, so ``o`` and ``O`` stay distinguishable by size.
- emoji: scale, position and tilt on a neutral grey background; the emoji's own colours are untouched because colour is
  the class cue (skin tones, coloured hearts, circles and squares differ in nothing else).
- fashion: a product (one Fashion-MNIST garment) seen in several views: scale, shift, tilt, mirror, exposure.
- numbers: two handwritten digits side by side; order matters, so views are never mirrored.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .sources import EMOJI_FONT, load_font

IMAGE_SIZE = 32
_CANVAS = 2 * IMAGE_SIZE
_EMOJI_PX = 109  # Noto Color Emoji is a bitmap font: 109 px is the one size it can be opened at


def _finish(canvas: Image.Image) -> Image.Image:
    return canvas.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)


def _contrasting_colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A random foreground and background colour whose brightness differs enough for the glyph to stay legible."""
    dark, light = rng.uniform(0.0, 0.45), rng.uniform(0.8, 1.0)
    values = (dark, light) if rng.random() < 0.5 else (light, dark)
    colours = []
    for value in values:
        red, green, blue = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.9), value)
        colours.append((round(255 * red), round(255 * green), round(255 * blue)))
    return colours[0], colours[1]


def render_glyph(char: str, face: str, rng: np.random.Generator) -> Image.Image:
    """One character in the typeface at path ``face``, on a fixed baseline, in random colours."""
    foreground, background = _contrasting_colours(rng)
    font = load_font(face, round(0.6 * _CANVAS * rng.uniform(0.92, 1.08)))
    canvas = Image.new("RGB", (_CANVAS, _CANVAS), background)
    origin = (_CANVAS / 2 + rng.uniform(-3, 3), 0.72 * _CANVAS + rng.uniform(-3, 3))
    ImageDraw.Draw(canvas).text(origin, char, font=font, fill=foreground, anchor="ms")
    canvas = canvas.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC, fillcolor=background)
    return _finish(canvas)


@lru_cache(maxsize=512)
def emoji_bitmap(sequence: str, font_path: str = EMOJI_FONT) -> Image.Image | None:
    """The emoji (a code-point sequence, shaped by Raqm so skin-tone and ZWJ sequences become one glyph), cropped.

    ``None`` when the font does not draw it.
    """
    font = load_font(font_path, _EMOJI_PX)
    canvas = Image.new("RGBA", (2 * _EMOJI_PX, 2 * _EMOJI_PX), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((_EMOJI_PX, _EMOJI_PX), sequence, font=font, embedded_color=True, anchor="mm")
    box = canvas.getbbox()
    return None if box is None else canvas.crop(box)


def render_emoji(bitmap: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One view of an emoji: scaled, tilted and shifted on a neutral grey (never coloured) background."""
    grey = round(255 * rng.uniform(0.35, 1.0))
    side = round(_CANVAS * rng.uniform(0.6, 0.95))
    scale = side / max(bitmap.size)
    sprite = bitmap.resize(
        (max(1, round(bitmap.width * scale)), max(1, round(bitmap.height * scale))), Image.Resampling.LANCZOS
    )
    sprite = sprite.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC, expand=True)
    canvas = Image.new("RGB", (_CANVAS, _CANVAS), (grey, grey, grey))
    # A tilted sprite can be a little larger than the canvas: then the offset is negative and its corners are cut.
    offset = (round((_CANVAS - sprite.width) * rng.random()), round((_CANVAS - sprite.height) * rng.random()))
    canvas.paste(sprite, offset, sprite)
    return _finish(canvas)


def render_fashion_view(garment: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One view of a product (a 28x28 uint8 Fashion-MNIST garment): scale, shift, tilt, mirror and exposure vary."""
    gamma = rng.uniform(0.7, 1.4)
    pixels = (255.0 * (garment.astype(np.float32) / 255.0) ** gamma).round().astype(np.uint8)
    sprite = Image.fromarray(pixels, mode="L")
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = round(_CANVAS * rng.uniform(0.8, 1.0))
    sprite = sprite.resize((side, side), Image.Resampling.BICUBIC)
    sprite = sprite.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC)
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    slack = _CANVAS - side
    canvas.paste(sprite, (round(rng.uniform(0, slack)), round(rng.uniform(0, slack))))
    return _finish(canvas)


def _digit_sprite(digit: np.ndarray, width: int, height: int) -> Image.Image:
    """An 8x8 scikit-learn digit (values 0..16) as a smooth grey sprite of the given size."""
    pixels = np.clip(digit * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels, mode="L").resize((width, height), Image.Resampling.BICUBIC)


def render_number(digits: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """A handwritten number: the given 8x8 digits side by side, each with its own size and position jitter.

    With one digit (the backbone's pretraining material) the digit is centred and larger.
    """
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    cell = _CANVAS // len(digits)
    for index, digit in enumerate(digits):
        width = round(min(cell, 0.7 * _CANVAS) * rng.uniform(0.8, 0.95))
        height = round(0.75 * _CANVAS * rng.uniform(0.85, 1.05))
        left = index * cell + round(rng.uniform(0, cell - width))
        top = round((_CANVAS - height) / 2 + rng.uniform(-4, 4))
        canvas.paste(_digit_sprite(digit, width, height), (left, top))
    ink = rng.uniform(0.6, 1.0)
    canvas = canvas.point(lambda value: round(value * ink))
    return _finish(canvas)
