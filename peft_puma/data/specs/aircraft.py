"""FGVC-Aircraft (2013b): 100 aircraft variants, 10,000 images (docs/data.md).

Original layout (``fgvc-aircraft-2013b.tar.gz``)::

    fgvc-aircraft-2013b/data/
        variants.txt                    one variant name per line (100), e.g. "707-320", "F/A-18", "Cessna 172"
        images_variant_train.txt        "<image_id> <variant name>" (the name may contain spaces)
        images_variant_val.txt
        images_variant_test.txt
        images/<image_id>.jpg

Split: the 100 variants sorted by name (Python string order), the first 50 train, the other 50 test, all images of a
variant on its side (train + val + test lists). The images keep the 20-pixel copyright banner at the bottom, as in
the published pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from .base import DatasetSpec, Entry

_LISTS = ("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")


class AircraftSpec(DatasetSpec):
    name = "aircraft"
    title = "FGVC-Aircraft"
    num_train_classes = 50
    num_test_classes = 50
    split_rule = "100 variants sorted by name, first 50 train, other 50 test; all images"
    marker = "variants.txt"
    root_candidates = ("", "data", "fgvc-aircraft-2013b/data")
    layout = "fgvc-aircraft-2013b/data/ with variants.txt, images_variant_{train,val,test}.txt and images/*.jpg"
    homepage = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/"
    hub_id = "Donghyun99/FGVC-Aircraft"
    hub_class_order = "name"

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        path = self.require(root / "variants.txt")
        with open(path, encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip()]
        return {name: name for name in names}

    def read_entries(self, root: Path) -> list[Entry]:
        variants = self.declared_classes(root)
        entries: list[Entry] = []
        seen: dict[str, str] = {}
        for list_name in _LISTS:
            path = root / list_name
            for number, (image_id, variant) in self.read_table(path, 2, "<image_id> <variant>"):
                where = f"{path} line {number}"
                if variant not in variants:
                    raise self.error(f"{where} names variant {variant!r}, which {root / 'variants.txt'} does not list")
                if image_id in seen:
                    raise self.error(f"image {image_id} is listed twice ({seen[image_id]} and {where}); re-download")
                seen[image_id] = where
                entries.append(Entry(str(root / "images" / f"{image_id}.jpg"), variant, where))
        return entries
