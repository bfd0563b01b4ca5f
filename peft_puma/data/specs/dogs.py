"""Stanford Dogs: 120 breeds, 20,580 images (docs/data.md).

Original layout (``images.tar``)::

    Images/n02085620-Chihuahua/n02085620_10074.jpg
    Images/<wnid>-<breed>/*.jpg            (120 folders)

Split: the 120 breed folders sorted by name (WordNet id order), the first 60 train, the next 60 test, all images of a
breed on its side. The classification lists (``lists.tar``) are not used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable
from pathlib import Path

from .base import DatasetSpec, Entry

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FOLDER = re.compile(r"^n\d{8}-.+$")


class DogsSpec(DatasetSpec):
    name = "dogs"
    title = "Stanford Dogs"
    num_train_classes = 60
    num_test_classes = 60
    split_rule = "120 breed folders sorted by name, first 60 train, next 60 test; all images"
    marker = "Images"
    root_candidates = ("", "StanfordDogs", "stanford_dogs", "stanford-dogs")
    layout = "Images/<wnid>-<breed>/*.jpg with 120 breed folders"
    homepage = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
    hub_id = "Donghyun99/Stanford-Dogs"
    hub_class_order = "index"

    def _breed_folders(self, root: Path) -> list[Path]:
        images = root / "Images"
        if not images.is_dir():
            raise self.error(f"{images} is not a folder. Expected the original layout: {self.layout}")
        folders = sorted(p for p in images.iterdir() if p.is_dir())
        stray = sorted(p.name for p in images.iterdir() if p.is_file() and not p.name.startswith("."))
        wrong = [p.name for p in folders if not _FOLDER.match(p.name)]
        if wrong or stray:
            raise self.error(
                f"wrong folder layout in {images}: expected only breed folders named <wnid>-<breed> "
                f"(e.g. n02085620-Chihuahua), found {(wrong + stray)[:5]}. Move them out or re-extract images.tar."
            )
        return folders

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        return {folder.name: folder.name.split("-", 1)[1] for folder in self._breed_folders(root)}

    def read_entries(self, root: Path) -> list[Entry]:
        entries = []
        for folder in self._breed_folders(root):
            files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
            others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
            if others:
                raise self.error(
                    f"{folder} holds files that are not images ({others[:5]}); move them out of Images/ so that "
                    "nothing is silently ignored."
                )
            entries.extend(Entry(str(p), folder.name, f"folder {folder}") for p in files)
        return entries
