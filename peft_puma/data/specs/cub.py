"""CUB-200-2011 (Caltech-UCSD Birds): 200 bird species, 11,788 images (docs/data.md).

Original layout (``CUB_200_2011.tgz``)::

    CUB_200_2011/
        images.txt              <image_id> <image_name>           (image_name relative to images/)
        image_class_labels.txt  <image_id> <class_id>             (class ids 1..200)
        classes.txt             <class_id> <NNN.Species_Name>
        images/NNN.Species_Name/*.jpg

Split: classes 1-100 train, 101-200 test (class-id order, which is the folder order); the classification split file
``train_test_split.txt`` is not used.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from .base import DatasetSpec, Entry


class CUBSpec(DatasetSpec):
    name = "cub"
    title = "CUB-200-2011"
    num_train_classes = 100
    num_test_classes = 100
    split_rule = "classes 1-100 train, 101-200 test"
    marker = "images.txt"
    root_candidates = ("", "CUB_200_2011")
    layout = "CUB_200_2011/ with images.txt, image_class_labels.txt, classes.txt and images/NNN.Name/*.jpg"
    homepage = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
    hub_id = "Donghyun99/CUB-200-2011"
    hub_class_order = "index"

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        path = root / "classes.txt"
        return {self.parse_int(f[0], path, n): f[1] for n, f in self.read_table(path, 2, "<class_id> <class_name>")}

    def read_entries(self, root: Path) -> list[Entry]:
        return read_id_lists(self, root, root / "images")


def read_id_lists(spec: DatasetSpec, root: Path, image_dir: Path) -> list[Entry]:
    """The images.txt + image_class_labels.txt pair shared by CUB and NABirds (NABirds' image ids are UUIDs)."""
    images_path, labels_path = root / "images.txt", root / "image_class_labels.txt"
    label_rows = spec.read_table(labels_path, 2, "<image_id> <class_id>")
    labels = {fields[0]: spec.parse_int(fields[1], labels_path, number) for number, fields in label_rows}
    declared = spec.declared_classes(root)
    entries = []
    for number, (image_id, image_name) in spec.read_table(images_path, 2, "<image_id> <image_name>"):
        if image_id not in labels:
            raise spec.error(
                f"image {image_id} (line {number} of {images_path}) has no class in {labels_path}; "
                "the two files do not belong together. Re-extract the dataset."
            )
        if labels[image_id] not in declared:
            raise spec.error(
                f"{labels_path} gives image {image_id} class {labels[image_id]}, which {root / 'classes.txt'} "
                "does not declare. Re-extract the dataset."
            )
        entries.append(Entry(str(image_dir / image_name), labels[image_id], f"{images_path} line {number}"))
    return entries
