"""Where UML-mini's raw material comes from: Debian packages and scikit-learn, found, checked and loaded offline.

UML-mini (see :mod:`peft_puma.data.uml_mini`) is built only from material a fresh machine can install from public
package registries, so the benchmark runs where the paper's datasets and pretrained weights cannot be downloaded:

- typefaces from Debian font packages (glyph domains; scripts as domains, characters as classes, faces as instances),
- Noto Color Emoji (``fonts-noto-color-emoji``),
- Fashion-MNIST (``dataset-fashion-mnist``: the Zalando idx files),
- scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: shipped inside the wheel, no download).

Each Debian source is known by one file its package installs (a *sentinel*), so a missing package is detected before
any rendering starts and the error names the exact ``apt-get install`` line to run. All paths are taken relative to a
``root`` (``/`` normally) so that tests can point at an empty tree and see that error.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import ImageFont

from ...errors import DatasetLayoutError


@dataclass(frozen=True)
class DebianSource:
    """One Debian package UML-mini reads and the file that proves it is installed (licences: docs/data.md)."""

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

SOURCES: tuple[DebianSource, ...] = (
    DebianSource("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    DebianSource("fonts-dejavu-extra", "/usr/share/fonts/truetype/dejavu/DejaVuSans-ExtraLight.ttf"),
    DebianSource("fonts-freefont-ttf", "/usr/share/fonts/truetype/freefont/FreeSans.ttf"),
    DebianSource("fonts-liberation2", "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"),
    DebianSource("fonts-cmu", "/usr/share/fonts/truetype/cmu/cmunrm.ttf"),
    DebianSource("fonts-urw-base35", "/usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf"),
    DebianSource("fonts-noto-core", "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),
    DebianSource("fonts-noto-color-emoji", EMOJI_FONT),
    DebianSource("dataset-fashion-mnist", f"{FASHION_DIR}/train-images-idx3-ubyte.gz"),
)
FONT_PACKAGES: tuple[str, ...] = (
    "fonts-dejavu-core", "fonts-dejavu-extra", "fonts-freefont-ttf", "fonts-liberation2", "fonts-cmu",
    "fonts-urw-base35", "fonts-noto-core",
)  # fmt: skip
"""The packages whose faces make up the glyph domains' typeface pool (the faces in :data:`FONT_DIRS`)."""
APT_INSTALL = "apt-get install -y --no-install-recommends"


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def missing_packages(packages: Iterable[str], root: str = "/") -> list[str]:
    """The packages among ``packages`` whose sentinel file is absent below ``root``, in :data:`SOURCES` order."""
    wanted = set(packages)
    unknown = wanted - {s.package for s in SOURCES}
    if unknown:
        raise DatasetLayoutError(f"unknown UML-mini sources {sorted(unknown)}; known: {[s.package for s in SOURCES]}")
    return [s.package for s in SOURCES if s.package in wanted and not os.path.isfile(_under(root, s.sentinel))]


def install_command(packages: Sequence[str]) -> str:
    """The exact shell line that installs ``packages`` (what the error message and the docs tell a user to run)."""
    return f"{APT_INSTALL} {' '.join(packages)}"


def require_packages(packages: Iterable[str], root: str = "/", install_missing: bool = False) -> None:
    """Fail early, naming the ``apt-get install`` line, when a Debian source is missing; or install it when asked.

    ``install_missing`` runs ``apt-get update`` and the install line (it needs root and Debian's registry); after it,
    the sentinels are checked again so a failed install is reported, not discovered later as a rendering error.
    """
    missing = missing_packages(packages, root)
    if not missing:
        return
    if install_missing and root == "/":
        if shutil.which("apt-get") is None:
            raise DatasetLayoutError(f"--install-missing needs apt-get (Debian); missing packages: {missing}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run([*APT_INSTALL.split(), *missing], check=True, env=env)
        missing = missing_packages(packages, root)
        if not missing:
            return
    raise DatasetLayoutError(
        f"UML-mini needs Debian packages that are not installed: {', '.join(missing)}. Install them with:\n"
        f"  {install_command(missing)}\n(as root, after `apt-get update`), or rerun with --install-missing."
    )


# --- typefaces --------------------------------------------------------------------------------------------------------

_PROBE_SIZE = 24


@cache
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType face: loading dominates glyph rendering time, and every face is used for many glyphs."""
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.RAQM)


def _draws_all(path: str, chars: str) -> bool:
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
def faces_drawing(chars: str, root: str = "/") -> tuple[str, ...]:
    """Every face in :data:`FONT_DIRS` below ``root`` that draws all of ``chars``, sorted by file name.

    Sorted by base name (not by full path) so that the pool, and therefore every sampled face, is the same on any
    machine with the same packages, whatever order the file system lists them in.
    """
    paths = []
    for folder in FONT_DIRS:
        folder = _under(root, folder)
        if os.path.isdir(folder):
            paths.extend(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".ttf", ".otf")))
    return tuple(p for p in sorted(paths, key=os.path.basename) if _draws_all(p, chars))


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
def load_fashion(part: str, root: str = "/") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``(N, 28, 28)`` uint8 and category labels ``(N,)``; ``part`` is ``"train"`` or ``"t10k"``.

    UML-mini draws its products from ``train`` only; the mini-ViT pretraining uses ``t10k``, so no image is shared.
    """
    folder = _under(root, FASHION_DIR)
    images = _read_idx(os.path.join(folder, f"{part}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(folder, f"{part}-labels-idx1-ubyte.gz"))
    return images, labels.astype(np.int64)


# --- scikit-learn digits ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 bundled 8x8 handwritten digits (values 0..16) and their labels; shipped with scikit-learn."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def digit_pools(seed: int) -> dict[str, np.ndarray]:
    """Split the digit images into three disjoint index pools: UML-mini ``train``, UML-mini ``test``, ``pretrain``.

    Two-digit numbers of the train and test classes are composed from different handwritten digits, and the
    backbone's pretraining sees a third set, so no digit image appears on both sides of any split.
    """
    count = len(load_digits()[1])
    order = np.random.default_rng([seed, 7]).permutation(count)
    third = count // 3
    return {"train": order[:third], "test": order[third : 2 * third], "pretrain": order[2 * third :]}
