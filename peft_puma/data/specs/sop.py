"""Stanford Online Products: 22,634 products (classes), 120,053 images (docs/data.md).

Original layout (``Stanford_Online_Products.zip``)::

    Stanford_Online_Products/
        Ebay_train.txt   header "image_id class_id super_class_id path", then one image per line
        Ebay_test.txt    same columns
        <category>_final/<image>.JPG

Split: the official lists: Ebay_train (classes 1-11,318, 59,551 images) train, Ebay_test (11,316 classes, 60,502
images) test, leave-one-out. ``Ebay_info.txt`` and the super-class lists are not used.
"""

from __future__ import annotations

from pathlib import Path

from .base import PARTITION_TEST, PARTITION_TRAIN, DatasetSpec, Entry

_FORM = "<image_id> <class_id> <super_class_id> <path>"


class SOPSpec(DatasetSpec):
    name = "sop"
    title = "Stanford Online Products"
    num_train_classes = 11318
    num_test_classes = 11316
    split_rule = "official Ebay_train.txt / Ebay_test.txt lists"
    marker = "Ebay_train.txt"
    root_candidates = ("", "Stanford_Online_Products")
    layout = "Stanford_Online_Products/ with Ebay_train.txt, Ebay_test.txt and <category>_final/*.JPG"
    homepage = "https://cvgl.stanford.edu/projects/lifted_struct/"

    @property
    def uses_official_partition(self) -> bool:
        return True

    def read_entries(self, root: Path) -> list[Entry]:
        entries = []
        for partition, file_name in ((PARTITION_TRAIN, "Ebay_train.txt"), (PARTITION_TEST, "Ebay_test.txt")):
            path = root / file_name
            self._check_header(path)
            for number, (_, class_id, _, image_path) in self.read_table(path, 4, _FORM, skip=1):
                key = self.parse_int(class_id, path, number)
                entries.append(Entry(str(root / image_path), key, f"{path} line {number}", partition))
        return entries

    def _check_header(self, path: Path) -> None:
        with open(self.require(path), encoding="utf-8") as handle:
            header = handle.readline().split()
        if header[:2] != ["image_id", "class_id"]:
            raise self.error(
                f"{path} does not start with the header line 'image_id class_id super_class_id path' "
                f"(got {' '.join(header)!r}); it is not the original list file. Re-download the dataset."
            )
