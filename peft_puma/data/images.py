"""Checking image files before they enter a dataset, so that a bad file fails at build time with its name.

A broken JPEG inside a 150K-image union otherwise surfaces hours into training as an opaque PIL error in a data-loader
worker. :func:`find_bad_images` opens every listed file once (the benchmark's datasets are downloaded archives
that are often partially extracted) and reports what is wrong with each bad one; the builder then raises, or skips and
counts them when the user asks for it. Nothing is dropped silently.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError

from ..errors import InvalidConfigError

ImageCheck = Literal["full", "header", "exists"]
IMAGE_CHECKS: tuple[str, ...] = ("full", "header", "exists")

# JPEG draft mode (decoding at 1/8 scale) skips the full-size inverse DCT but still reads the whole entropy-coded
# stream, so truncation is detected. Measured here: about 2.3 ms per 500x375 JPEG (2.5 ms without draft mode).
_DRAFT_SIZE = (16, 16)


@dataclass(frozen=True)
class BadImage:
    """One image file that cannot be used, with the reason in words."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def check_image(path: str | os.PathLike[str], mode: ImageCheck = "full") -> str | None:
    """Return why ``path`` is not a usable image, or ``None`` when it is.

    ``mode``: ``"exists"`` only checks that a non-empty file is there; ``"header"`` also identifies the format;
    ``"full"`` (default) also decodes the pixels, which catches truncated and corrupt files.
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
            # PIL warns (instead of failing) on some damaged files; treat those warnings as the damage they report.
            warnings.simplefilter("error")
            with Image.open(path) as image:
                if mode == "full":
                    image.draft("RGB", _DRAFT_SIZE)
                    image.load()
    except UnidentifiedImageError:
        return "not a recognised image format (corrupt or not an image)"
    except (OSError, SyntaxError, ValueError, Warning, Image.DecompressionBombError) as error:
        return f"cannot be decoded ({type(error).__name__}: {error}); the file is truncated or corrupt"
    return None


def find_bad_images(paths: Sequence[str], mode: ImageCheck = "full", num_threads: int | None = None) -> list[BadImage]:
    """Check every path (in parallel threads: PIL releases the GIL while decoding) and return the bad ones in order."""
    if mode not in IMAGE_CHECKS:
        raise InvalidConfigError(f"check_images must be one of {IMAGE_CHECKS}, got {mode!r}")
    if not paths:
        return []
    workers = num_threads or min(8, os.cpu_count() or 1)
    if mode == "exists" or workers == 1 or len(paths) < 64:
        reasons = [check_image(path, mode) for path in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(lambda path: check_image(path, mode), paths, chunksize=256))
    return [BadImage(path, reason) for path, reason in zip(paths, reasons) if reason is not None]
