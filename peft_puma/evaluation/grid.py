"""The contact sheet of ``query --grid``: one row per query, the query first, then its top-k (docs/search.md, "The
grid").

Every tile is a thumbnail (``thumbnail_size`` pixels square, the image scaled to fit and centred on white) in a frame,
with a caption under it. The query has a blue frame and the caption ``query`` (and its label when known); a result has
a green frame when its label equals the query's, red when it differs, grey when either label is unknown, and the
caption ``#rank score``. Every cell has the same size, so a sheet of ``Q`` queries and ``k`` results is
``(k + 1) * cell_width`` by ``Q * cell_height`` pixels (:func:`grid_size`).

The PNG carries a ``Software: peft_puma.search`` text chunk; an existing file is replaced only when it carries it
(docs/safety.md: peft_puma overwrites only what it wrote).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps, PngImagePlugin

from ..errors import ForeignContentError, InvalidConfigError
from ..output_place import check_output_place
from ..owned_paths import write_failures_reported, write_file_atomically

MIN_THUMBNAIL = 64
DEFAULT_THUMBNAIL = 96
FRAME = 4  # frame width around a thumbnail
GAP = 3  # blank space around a framed thumbnail
CAPTION = 30  # two lines of text under a thumbnail
COLOURS = {"query": (30, 90, 230), "match": (20, 160, 60), "miss": (220, 40, 40), None: (170, 170, 170)}
BACKGROUND = (255, 255, 255)
SOFTWARE = "peft_puma.search"


@dataclass(frozen=True)
class Tile:
    """One cell: the image (``None``: a blank, for a file gone since indexing), two caption lines, the frame kind
    (``"query"``, ``"match"``, ``"miss"`` or ``None`` for unknown)."""

    image: Image.Image | None
    caption: str
    detail: str = ""
    frame: str | None = None


def cell_size(thumbnail_size: int) -> tuple[int, int]:
    """``(width, height)`` of one cell for thumbnails of ``thumbnail_size`` pixels."""
    side = thumbnail_size + 2 * (FRAME + GAP)
    return side, side + CAPTION


def grid_size(num_rows: int, num_columns: int, thumbnail_size: int = DEFAULT_THUMBNAIL) -> tuple[int, int]:
    """``(width, height)`` in pixels of a sheet of ``num_rows`` queries and ``num_columns`` tiles per row."""
    width, height = cell_size(thumbnail_size)
    return num_columns * width, num_rows * height


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(rows: Sequence[Sequence[Tile]], thumbnail_size: int = DEFAULT_THUMBNAIL) -> Image.Image:
    """The sheet of ``rows`` of tiles (a row may be shorter than the longest: its end stays blank)."""
    if thumbnail_size < MIN_THUMBNAIL:
        raise InvalidConfigError(f"thumbnail_size must be at least {MIN_THUMBNAIL} pixels; got {thumbnail_size}.")
    columns = max((len(row) for row in rows), default=0)
    sheet = Image.new("RGB", grid_size(len(rows), columns, thumbnail_size), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(max(10, thumbnail_size // 8))
    cell_width, cell_height = cell_size(thumbnail_size)
    for row_index, row in enumerate(rows):
        for column_index, tile in enumerate(row):
            left, top = column_index * cell_width + GAP, row_index * cell_height + GAP
            outer = thumbnail_size + 2 * FRAME
            draw.rectangle((left, top, left + outer - 1, top + outer - 1), fill=COLOURS[tile.frame])
            inner = (left + FRAME, top + FRAME)
            if tile.image is not None:
                thumb = ImageOps.contain(tile.image.convert("RGB"), (thumbnail_size, thumbnail_size))
                canvas = Image.new("RGB", (thumbnail_size, thumbnail_size), BACKGROUND)
                canvas.paste(thumb, ((thumbnail_size - thumb.width) // 2, (thumbnail_size - thumb.height) // 2))
            else:
                canvas = Image.new("RGB", (thumbnail_size, thumbnail_size), (225, 225, 225))
            sheet.paste(canvas, inner)
            text_top = top + outer + 1
            caption_colour = COLOURS["query"] if tile.frame == "query" else (0, 0, 0)
            draw.text((left, text_top), _fit(tile.caption, font, outer), fill=caption_colour, font=font)
            if tile.detail:
                detail = _fit(tile.detail, font, outer)
                draw.text((left, text_top + CAPTION // 2), detail, fill=(90, 90, 90), font=font)
    return sheet


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """``text``, cut short with an ellipsis where it would run into the next tile."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


GRID_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # the file name's extension says the format


def grid_format(path: str) -> str:
    """The image format of a grid named ``path`` (by its extension); another extension is refused, so that a
    ``.jpg`` name never holds PNG bytes."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in GRID_FORMATS:
        raise InvalidConfigError(
            f"The grid {path!r}: a grid is written in the format its name says; give a name ending in "
            f"{', '.join(GRID_FORMATS)}."
        )
    return GRID_FORMATS[extension]


def check_grid_output(path: str) -> None:
    """A grid may be written at ``path`` when nothing is there or when it is a grid written by this command, and a
    file can be made there (:func:`~peft_puma.output_place.check_output_place`: missing folders are made)."""
    if os.path.isdir(path):
        raise ForeignContentError(f"The grid {path!r} is a folder; give the path of a .png or .jpg file.")
    grid_format(path)
    check_output_place(path, "The grid")
    if not os.path.exists(path):
        return
    if not _is_our_grid(path):
        raise ForeignContentError(
            f"{path!r} exists and is not a grid written by peft_puma; nothing was written: choose another path."
        )


def _is_our_grid(path: str) -> bool:
    """A PNG with our ``Software`` text chunk, or a JPEG with our comment."""
    try:
        with Image.open(path) as existing:
            marks = (getattr(existing, "text", {}).get("Software"), existing.info.get("comment"))
    except (OSError, ValueError):
        return False
    return SOFTWARE in marks or SOFTWARE.encode() in marks


def save_grid(sheet: Image.Image, path: str) -> None:
    """Write the sheet in the format of ``path``'s extension (through a temporary file beside ``path``, then
    renamed), creating missing parent folders; a failed write is one line."""
    check_grid_output(path)
    image_format = grid_format(path)
    if image_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", SOFTWARE)
        options = {"pnginfo": info}
    else:
        options = {"comment": SOFTWARE, "quality": 95}
    with write_failures_reported(
        f"Writing the grid {path}", path, kept=lambda: "any earlier grid there is unchanged; choose another path."
    ):
        write_file_atomically(path, lambda partial: sheet.save(partial, format=image_format, **options))
