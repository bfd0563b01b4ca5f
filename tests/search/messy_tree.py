"""A user's folder as it comes, made by the tests that read it: two collections of class folders in every image mode
(JPEG and PNG; RGB, greyscale, RGBA, palette, 16-bit), with a stray text file, a subfolder inside a class folder, an
empty class folder, a truncated JPEG, a name that is not UTF-8, a link that points to itself and a class folder that
is a link to another class (docs/collections.md)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

DOMAINS = ("birds", "signs")
CLASSES = 4
PER_CLASS = 4
BAD_NAME = b"caf\xe9.png"  # Latin-1, not UTF-8
MODES = ("RGB", "L", "RGBA", "P", "I;16")


def _image(rng: np.random.Generator, mode: str, base: int) -> Image.Image:
    pixels = np.clip(rng.normal(base, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "I;16":
        return Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257)
    if mode == "P":
        return image.convert("P")
    return image.convert(mode)


def make_clean_tree(root: str, seed: int = 0) -> str:
    """``root/<domain>/<domain>_<n>/<k>.png|.jpg``, every image mode in turn (JPEG for RGB and greyscale)."""
    rng = np.random.default_rng(seed)
    count = 0
    for domain_index, domain in enumerate(DOMAINS):
        for index in range(CLASSES):
            folder = os.path.join(root, domain, f"{domain}_{index}")
            os.makedirs(folder, exist_ok=True)
            for number in range(PER_CLASS):
                mode = MODES[count % len(MODES)]
                count += 1
                image = _image(rng, mode, 40 + 50 * index + 20 * domain_index)
                suffix = ".jpg" if mode in ("RGB", "L") else ".png"
                image.save(os.path.join(folder, f"{number}{suffix}"))
    return root


def make_messy_tree(root: str, *, bad_name: bool = True, self_loop: bool = True) -> dict[str, str]:
    """:func:`make_clean_tree` with every mess of the module docstring; returns the path of each mess."""
    make_clean_tree(root)
    messes = {
        "text": os.path.join(root, "birds", "notes.txt"),
        "nested": os.path.join(root, "birds", "birds_1", "more", "extra.png"),
        "empty": os.path.join(root, "signs", "signs_empty"),
        "truncated": os.path.join(root, "signs", "signs_2", "9.jpg"),
        "linked_class": os.path.join(root, "signs", "signs_link"),
    }
    with open(messes["text"], "w", encoding="utf-8") as handle:
        handle.write("where these came from\n")
    os.makedirs(os.path.dirname(messes["nested"]))
    Image.new("RGB", (16, 16), (200, 10, 10)).save(messes["nested"])
    os.makedirs(messes["empty"])
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(messes["truncated"], quality=95)
    with open(messes["truncated"], "r+b") as handle:
        handle.truncate(os.path.getsize(messes["truncated"]) // 2)
    os.symlink(os.path.join(root, "signs", "signs_0"), messes["linked_class"])
    if bad_name:
        path = os.path.join(os.fsencode(root), b"birds", b"birds_2", BAD_NAME)
        with open(path, "wb") as handle:
            Image.new("RGB", (16, 16), (0, 90, 0)).save(handle, format="PNG")
        messes["bad_name"] = os.fsdecode(path)
    if self_loop:
        messes["self_loop"] = os.path.join(root, "birds", "birds_3", "loop.jpg")
        os.symlink("loop.jpg", messes["self_loop"])
    return messes
