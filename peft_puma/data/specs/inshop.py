"""DeepFashion In-shop Clothes Retrieval: 7,982 items (classes), 52,712 images (docs/data.md).

Original layout (the benchmark's ``Eval/`` and ``Img/`` folders)::

    In-shop/                     (or list_eval_partition.txt under Eval/ and img/ under Img/)
        list_eval_partition.txt  line 1: number of images; line 2: "image_name item_id evaluation_status"; then
                                 "img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train" (train|query|gallery)
        img/MEN|WOMEN/<category>/id_<8 digits>/*.jpg

Split: the official partition: 3,997 training items (25,882 images); the 3,985 test items keep their roles, 14,218
query and 12,612 gallery images. Queries are searched in the gallery only (docs/data.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..schema import ROLE_GALLERY, ROLE_QUERY
from .base import PARTITION_TRAIN, DatasetSpec, Entry

LIST_FILE = "list_eval_partition.txt"
_STATUSES = (PARTITION_TRAIN, ROLE_QUERY, ROLE_GALLERY)
_IMAGE_BASES = ("", "..", "Img", "../Img")  # relative to the folder of the list file
_PROBE = 32  # listed images looked up to find where img/ was extracted


class InShopSpec(DatasetSpec):
    name = "inshop"
    title = "In-shop Clothes Retrieval"
    num_train_classes = 3997
    num_test_classes = 3985
    split_rule = "official list_eval_partition.txt: train / query / gallery"
    marker = LIST_FILE
    root_candidates = ("", "Eval", "In-shop Clothes Retrieval Benchmark", "In-shop Clothes Retrieval Benchmark/Eval")
    layout = "list_eval_partition.txt (at the top or in Eval/) and img/ (at the top or in Img/)"
    homepage = "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"

    @property
    def uses_official_partition(self) -> bool:
        return True

    def read_entries(self, root: Path) -> list[Entry]:
        path = root / LIST_FILE
        declared_count = self._declared_count(path)
        rows = self.read_table(path, 3, "<image_name> <item_id> <evaluation_status>", skip=2)
        if len(rows) != declared_count:
            raise self.error(
                f"{path} announces {declared_count} images on its first line but lists {len(rows)}: the file is "
                "truncated or edited. Re-download it."
            )
        image_base = self._image_base(root, [fields[0] for _, fields in rows[:_PROBE]])
        entries = []
        for number, (image_name, item_id, status) in rows:
            if status not in _STATUSES:
                raise self.error(f"line {number} of {path}: evaluation_status {status!r} is not one of {_STATUSES}")
            entries.append(Entry(str(image_base / image_name), item_id, f"{path} line {number}", status))
        return entries

    def _declared_count(self, path: Path) -> int:
        with open(self.require(path), encoding="utf-8") as handle:
            first, second = handle.readline().strip(), handle.readline().split()
        if not first.isdigit() or second != ["image_name", "item_id", "evaluation_status"]:
            raise self.error(
                f"{path} does not start with the image count and the header 'image_name item_id evaluation_status' "
                "(original format); re-download it."
            )
        return int(first)

    def _image_base(self, root: Path, probe: list[str]) -> Path:
        def found(base: Path) -> int:
            return sum(os.path.exists(base / name) for name in probe)

        bases = [(root / relative).resolve() for relative in _IMAGE_BASES]
        best = max(bases, key=found)
        if found(best) == 0:
            raise self.error(
                f"none of the first listed images (e.g. {probe[0]}) exists under {', '.join(map(str, bases))}. "
                f"Extract Img/img.zip so that img/ sits next to {LIST_FILE} or inside Img/."
            )
        return best
