"""NABirds (North American Birds): 555 visual categories (leaf classes), 48,562 images (docs/data.md).

Original layout (``nabirds.tar.gz``)::

    nabirds/
        images.txt              <image_uuid> <NNNN/filename.jpg>   (relative to images/)
        image_class_labels.txt  <image_uuid> <class_id>
        classes.txt             <class_id> <name>                   (1,011 nodes of the taxonomy, leaves and inner)
        hierarchy.txt           <child_class_id> <parent_class_id>  (not needed for the split)
        images/NNNN/*.jpg

The leaf classes are exactly the classes that have images (555). Split: those class ids sorted numerically, the first
278 train, the other 277 test, all images of a class on its side (the classification ``train_test_split.txt`` is not
used).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from .base import DatasetSpec, Entry
from .cub import read_id_lists


class NABirdsSpec(DatasetSpec):
    name = "nabirds"
    title = "NABirds"
    num_train_classes = 278
    num_test_classes = 277
    split_rule = "555 leaf classes sorted by id, first 278 train, the other 277 test; all images of a class"
    marker = "image_class_labels.txt"
    root_candidates = ("", "nabirds")
    layout = "nabirds/ with images.txt, image_class_labels.txt, classes.txt and images/NNNN/*.jpg"
    homepage = "https://dl.allaboutbirds.org/nabirds"

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        # classes.txt also lists inner taxonomy nodes, which have no images: it cannot tell an empty leaf apart, so the
        # class-count check (555 leaves) does that job.
        path = root / "classes.txt"
        return {self.parse_int(f[0], path, n): f[1] for n, f in self.read_table(path, 2, "<class_id> <class_name>")}

    def check_no_empty_class(self, base: Path, entries: list[Entry]) -> None:
        return None

    def read_entries(self, root: Path) -> list[Entry]:
        return read_id_lists(self, root, root / "images")
