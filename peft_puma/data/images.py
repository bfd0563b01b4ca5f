"""Checking image files before they are used, so that a bad file fails early and by name: one checker for the dataset
builders, ``embed``, ``search`` and ``evaluate``.

A broken JPEG inside a 150K-image union otherwise surfaces hours into training as an opaque PIL error in a data-loader
worker, and a truncated photo in a gallery folder half-way through embedding it. :func:`check_image` says what is
wrong with one file (or ``None``); :func:`find_bad_images` checks many in parallel threads; :func:`check_folder` checks
every image file under a folder (on the main process of a multi-process run, the verdict shared with the others).
The caller then raises, or skips and reports what it skipped (:func:`require_readable`, ``on_error``). Nothing is
dropped silently.

It is also the one place where a stored image becomes the model's input: :func:`decode_image` decodes as ``datasets``
does and :func:`to_rgb` makes every mode 8-bit RGB by one rule (docs/collections.md, "Image modes"), for training,
evaluation, ``embed`` and ``search`` alike.
"""

from __future__ import annotations

import os
import struct
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import InvalidConfigError, InvalidInputError
from .listing import IMAGE_EXTENSIONS, list_folder

CheckMode = Literal["full", "header", "exists"]
IMAGE_CHECKS: tuple[str, ...] = ("full", "header", "exists")
# The image check of every folder read before training (the Python builders, the folder reader, DataConfig's
# check_images): "full" decodes each image once, so a truncated or corrupt file is found at start (and skipped or
# reported there) instead of stopping a training run mid-epoch, where on_error no longer applies; it costs about
# 0.05-0.1 ms more per small image than "header" on 2 cores (docs/collections.md, "Checking images").
DEFAULT_IMAGE_CHECK: CheckMode = "full"
ON_ERROR_CHOICES: tuple[str, ...] = ("stop", "skip")
_NAMED_IN_MESSAGES = 3  # unreadable files named in a one-line message (the rest are counted)
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit greyscale (PNG, TIFF), or 32-bit integers
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WHITE = (255, 255, 255, 255)
_DECODER = datasets.Image()  # datasets' own decoding: from a path or bytes, EXIF orientation applied

# What PIL raises on a file it cannot decode: OSError for truncated or broken data, ValueError / SyntaxError /
# EOFError / struct.error / IndexError / TypeError from its format parsers on malformed headers.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
)


@dataclass(frozen=True)
class BadImage:
    """One image file that cannot be used: its path (relative to the checked folder where there is one) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


class FolderCheck(NamedTuple):
    """:func:`check_folder` of a folder: ``good`` relative paths (sorted) and the ``bad`` files, in path order."""

    good: list[str]
    bad: list[BadImage]


def check_image(path: str | os.PathLike[str], mode: CheckMode = "full") -> str | None:
    """Return why ``path`` is not a usable image, in one line, or ``None`` when it is.

    ``mode``: ``"exists"`` only checks that a non-empty file is there; ``"header"`` also identifies the format;
    ``"full"`` (default) also decodes every pixel and converts to RGB, as embedding and training do, which catches
    truncated and corrupt files (a truncated JPEG opens fine and fails only there).
    """
    if mode not in IMAGE_CHECKS:
        raise InvalidConfigError(f"check_images must be one of {IMAGE_CHECKS}, got {mode!r}")
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return "file not found"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not os.path.isfile(path):
        return "is not a regular file"
    if size == 0:
        return "file is empty (0 bytes)"
    if mode == "exists":
        return None
    try:
        with warnings.catch_warnings():
            # PIL only warns on an image just below its size limit; that warning is the bomb it reports.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if mode == "full":
                    image.load()
                    to_rgb(image)
    except UnidentifiedImageError:
        return "not a recognised image format (not an image file, or a corrupt one)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"too large to decode safely, a possible decompression bomb ({_one_line(error)})"
    except PermissionError as error:
        return f"cannot be read ({error.strerror or error})"
    except _DECODE_ERRORS as error:
        return f"cannot be decoded ({type(error).__name__}: {_one_line(error)}); the file is truncated or corrupt"
    return None


def find_bad_images(paths: Sequence[str], mode: CheckMode = "full", num_threads: int | None = None) -> list[BadImage]:
    """Check every path (in parallel threads: PIL releases the GIL while decoding) and return the bad ones in order."""
    if mode not in IMAGE_CHECKS:
        raise InvalidConfigError(f"check_images must be one of {IMAGE_CHECKS}, got {mode!r}")
    reasons = _reasons(paths, mode, num_threads)
    return [BadImage(path, reason) for path, reason in zip(paths, reasons) if reason is not None]


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursively, by extension, following links to folders: the one listing rule of
    :mod:`.listing`), as paths relative to it, sorted."""
    if not os.path.exists(folder):
        raise InvalidInputError(f"The image folder {folder!r} does not exist.")
    if not os.path.isdir(folder):
        raise InvalidInputError(f"{folder!r} is not a folder of images.")
    try:
        paths = list_folder(folder).files
    except OSError as error:
        raise InvalidInputError(f"Cannot list the image folder {folder!r}: {error.strerror or error}.") from None
    if not paths:
        raise InvalidInputError(f"No image file ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}.")
    return sorted(paths)


def check_folder(folder: str, *, accelerator: Any = None, progress: bool = False) -> FolderCheck:
    """``(good, bad)`` of the image files under ``folder`` (:func:`list_images`), each fully decoded once.

    Under several processes (``accelerator``) only the main process decodes and the others receive its verdict, so
    every process holds the same lists. A missing folder or one without image files raises ``InvalidInputError``.
    """
    paths = list_images(folder)  # every process: cheap, and a missing folder fails everywhere alike
    num_processes = accelerator.num_processes if accelerator is not None else 1
    if accelerator is None or accelerator.is_main_process:
        full = [os.path.join(folder, path) for path in paths]
        reasons = _reasons(full, "full", None, description="checking images" if progress else None)
    else:
        reasons = []
    if num_processes > 1:
        from accelerate.utils import broadcast_object_list  # only under several processes

        reasons = broadcast_object_list([reasons])[0]
    return _split(paths, reasons)


def check_files(paths: Sequence[str]) -> FolderCheck:
    """``(good, bad)`` of image files given one by one (as :func:`check_folder` checks a folder's); a missing file is
    a bad one."""
    return _split(list(paths), _reasons(paths, "full", None))


def require_readable(
    folder: str,
    check: FolderCheck,
    on_error: str = "stop",
    *,
    skip_hint: str = 'on_error="skip"',
    use: str = "embed",
) -> list[str]:
    """Raise ``InvalidInputError`` (one line, naming the files) when ``check`` has unreadable images and
    ``on_error`` is ``"stop"``, or when it has no readable image at all; return ``check.good`` otherwise. ``use``:
    what the command does with the readable images (``embed``, ``use``), for the hint."""
    check_on_error(on_error)
    total = len(check.good) + len(check.bad)
    if not check.good:
        raise InvalidInputError(
            f"None of the {total} image file(s) under {folder!r} can be read: {_named(folder, check.bad)}."
        )
    if check.bad and on_error == "stop":
        first = check.bad[0]
        others = f" ({len(check.bad) - 1} more unreadable file(s) under {folder!r})" if len(check.bad) > 1 else ""
        raise InvalidInputError(
            f"Cannot read the image {os.path.join(folder, first.path)!r}: {first.reason}{others}. "
            f"Use {skip_hint} to {use} the {len(check.good)} readable image(s) of {total} and skip the rest."
        )
    return check.good


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise InvalidConfigError(f"on_error must be one of {ON_ERROR_CHOICES}, not {on_error!r}.")


def report_skipped(folder: str, check: FolderCheck) -> None:
    """List the skipped files of ``check`` on stderr, one per line with its reason."""
    total = len(check.good) + len(check.bad)
    lines = [f"warning: skipped {len(check.bad)} of {total} image file(s) under {folder!r} that cannot be read:"]
    lines += [f"  {os.path.join(folder, item.path)}: {item.reason}" for item in check.bad]
    print("\n".join(lines), file=sys.stderr)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as every model input is made: 8 bits per channel, RGB (docs/collections.md, "Image modes").

    RGB is kept; greyscale, bilevel, CMYK and the other modes take PIL's conversion; 16-bit greyscale (``I;16``, and
    ``I`` as older Pillow opens it) is scaled to 8 bits (value / 257), where PIL's conversion would clip everything
    above 255 to white; float greyscale (``F``) is clipped to 0-255; transparent pixels (``RGBA``, ``LA``, a palette
    or greyscale image with a transparent colour) are composited onto white, as a viewer on a white page shows them,
    rather than keeping the colour stored under them (often black).
    """
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES or image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels / 257.0 if image.mode != "F" else pixels
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, _WHITE)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def decode_image(value: Any) -> Image.Image:
    """One stored image (a file path, ``datasets``' ``{"path", "bytes"}``, or an image already decoded) in RGB:
    decoded as ``datasets`` decodes its ``Image`` feature (EXIF orientation applied), then :func:`to_rgb`.

    A file that cannot be decoded (truncated, corrupt, gone, not an image) is an ``InvalidInputError`` naming it, so
    that a bad file found while training or embedding ends as one line, not a decoder's traceback.
    """
    if isinstance(value, Image.Image):
        return to_rgb(value)
    stored = {"path": value, "bytes": None} if isinstance(value, str | os.PathLike) else value
    try:
        return to_rgb(_DECODER.decode_example(stored))
    except (UnidentifiedImageError, Image.DecompressionBombError, *_DECODE_ERRORS) as error:
        where = stored.get("path") or "an image stored in the dataset"
        raise InvalidInputError(
            f"Cannot read the image {where!r}: {_one_line(error)}. Check every image before training with "
            "check_images: full (on_error: skip then leaves the unreadable ones out)."
        ) from error


def open_rgb(path: str) -> Image.Image:
    """The image at ``path`` in RGB, as every model input is made (:func:`decode_image`); an unreadable file is an
    ``InvalidInputError`` naming it (it was readable when checked: the file changed since)."""
    try:
        return decode_image(path)
    except InvalidInputError as error:
        raise InvalidInputError(
            f"Cannot read the image {path!r} (changed since it was checked?): {_one_line(error.__cause__)}."
        ) from error


def _reasons(
    paths: Sequence[str], mode: CheckMode, num_threads: int | None, description: str | None = None
) -> list[str | None]:
    if not paths:
        return []
    workers = num_threads or min(8, os.cpu_count() or 1)
    if mode == "exists" or workers == 1 or (len(paths) < 64 and description is None):
        return [check_image(path, mode) for path in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda path: check_image(path, mode), paths, chunksize=64)
        return list(tqdm(results, total=len(paths), desc=description, disable=description is None))


def _split(paths: list[str], reasons: Sequence[str | None]) -> FolderCheck:
    good = [path for path, reason in zip(paths, reasons) if reason is None]
    bad = [BadImage(path, reason) for path, reason in zip(paths, reasons) if reason is not None]
    return FolderCheck(good, bad)


def _named(folder: str, bad: Sequence[BadImage]) -> str:
    shown = "; ".join(f"{os.path.join(folder, item.path)} ({item.reason})" for item in bad[:_NAMED_IN_MESSAGES])
    more = len(bad) - _NAMED_IN_MESSAGES
    return shown + (f"; and {more} more" if more > 0 else "")


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:  # FileNotFoundError, PermissionError, ...: without the path
        text = error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())
