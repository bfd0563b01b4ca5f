"""Oxford Flowers-102: 102 flower species, 8,189 images (docs/data.md).

Original layout::

    jpg/image_00001.jpg .. jpg/image_08189.jpg   (102flowers.tgz)
    imagelabels.mat                              labels: 1 x 8189, class ids 1..102 (image i has labels[i-1])
    setid.mat                                    trnid/valid/tstid: the classification split (not used)

Split: classes 1-51 train, 52-102 test, all images (train + val + test of the classification split).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import numpy as np

from .base import DatasetSpec, Entry

NUM_CLASSES = 102


class FlowersSpec(DatasetSpec):
    name = "flowers"
    title = "Oxford Flowers-102"
    num_train_classes = 51
    num_test_classes = 51
    split_rule = "classes 1-51 train, 52-102 test; all images (train+val+test)"
    marker = "imagelabels.mat"
    root_candidates = ("", "flowers-102", "flowers102", "oxford_flowers102")
    layout = "imagelabels.mat and jpg/image_NNNNN.jpg"
    homepage = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
    hub_id = "dpdl-benchmark/oxford_flowers102"
    hub_class_order = "index"

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        # The release names no classes, only ids 1..102; every id must have images.
        return {class_id: f"class {class_id}" for class_id in range(1, NUM_CLASSES + 1)}

    def read_entries(self, root: Path) -> list[Entry]:
        path = self.require(root / "imagelabels.mat")
        from scipy.io import loadmat  # deferred: scipy is heavy and only Cars and Flowers need it

        try:
            labels = np.asarray(loadmat(path)["labels"]).reshape(-1)
        except Exception as error:  # damaged file or missing variable
            reason = f"{type(error).__name__}: {error}"
            raise self.error(f"cannot read 'labels' from {path} ({reason}); re-download it") from None
        outside = sorted({int(x) for x in labels} - set(range(1, NUM_CLASSES + 1)))
        if outside:
            raise self.error(f"{path} has class ids {outside[:5]} outside 1..{NUM_CLASSES}: not the original file")
        return [
            Entry(str(root / "jpg" / f"image_{index:05d}.jpg"), int(label), f"{path} entry {index}")
            for index, label in enumerate(labels, start=1)
        ]
