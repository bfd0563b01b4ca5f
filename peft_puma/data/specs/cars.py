"""Stanford Cars (Cars-196): 196 car models, 16,185 images (docs/data.md).

Two released layouts are read:

- the devkit release::

      cars_train/*.jpg, cars_test/*.jpg
      devkit/cars_meta.mat               class_names (196)
      devkit/cars_train_annos.mat        annotations: bbox_x1 .. bbox_y2, class (1..196), fname
      cars_test_annos_withlabels.mat     same fields, for cars_test/ (at the top or in devkit/)

- the combined release: ``car_ims/*.jpg`` + ``cars_annos.mat`` (annotations: relative_im_path, bbox, class, test;
  class_names).

Split: classes 1-98 train, 99-196 test, over all images of both classification splits. Reading ``.mat`` files needs
scipy (installed with pytorch-metric-learning).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from .base import DatasetSpec, Entry

_COMBINED = "cars_annos.mat"
_META = "devkit/cars_meta.mat"
_TEST_WITH_LABELS = ("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat")


class CarsSpec(DatasetSpec):
    name = "cars"
    title = "Stanford Cars (Cars-196)"
    num_train_classes = 98
    num_test_classes = 98
    split_rule = "classes 1-98 train, 99-196 test"
    marker = _META
    root_candidates = ("", "stanford_cars", "stanford-cars", "StanfordCars")
    layout = (
        "cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat and "
        "cars_test_annos_withlabels.mat; or car_ims/ with cars_annos.mat"
    )
    homepage = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html"
    hub_id = "Donghyun99/Stanford-Cars"
    hub_class_order = "index"

    def locate(self, root: str | os.PathLike[str]) -> Path:
        base = Path(root).expanduser()
        for candidate in self.root_candidates:
            if (base / candidate / _COMBINED).exists():
                return (base / candidate).resolve()
        return super().locate(root)

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        source = root / _COMBINED if (root / _COMBINED).exists() else root / _META
        names = _as_list(self._load_mat(source, "class_names"))
        return {index + 1: str(name) for index, name in enumerate(names)}

    def read_entries(self, root: Path) -> list[Entry]:
        if (root / _COMBINED).exists():
            return [
                Entry(str(root / item["relative_im_path"]), int(item["class"]), f"{root / _COMBINED} entry {n + 1}")
                for n, item in enumerate(self._annotations(root / _COMBINED, ("relative_im_path", "class")))
            ]
        test_annos = next((root / p for p in _TEST_WITH_LABELS if (root / p).exists()), None)
        if test_annos is None:
            raise self.error(
                f"missing file {root / _TEST_WITH_LABELS[0]}: the devkit's cars_test_annos.mat has no classes, and the "
                "class split (docs/data.md) needs the classes of the test images too. Download "
                "cars_test_annos_withlabels.mat (released separately) into the dataset folder."
            )
        entries = []
        for annos, image_dir in ((root / "devkit/cars_train_annos.mat", "cars_train"), (test_annos, "cars_test")):
            for n, item in enumerate(self._annotations(annos, ("fname", "class"))):
                path = root / image_dir / item["fname"]
                entries.append(Entry(str(path), int(item["class"]), f"{annos} entry {n + 1}"))
        return entries

    def _annotations(self, path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        annotations = _as_list(self._load_mat(path, "annotations"))
        for n, item in enumerate(annotations):
            missing = [f for f in fields if not isinstance(item, dict) or f not in item]
            if missing:
                raise self.error(f"entry {n + 1} of {path} lacks field(s) {missing}; it is not the original file")
        return annotations

    def _load_mat(self, path: Path, variable: str) -> Any:
        self.require(path)
        from scipy.io import loadmat  # deferred: scipy is heavy and only Cars and Flowers need it

        try:
            content = loadmat(path, simplify_cells=True)
        except Exception as error:  # scipy raises several types for damaged files
            raise self.error(f"cannot read {path} ({type(error).__name__}: {error}); re-download it") from None
        if variable not in content:
            raise self.error(f"{path} has no variable {variable!r}; it is not the original file. Re-download it.")
        return content[variable]


def _as_list(value: Any) -> list[Any]:
    """scipy's simplify_cells gives a bare item for one-element arrays and ndarrays otherwise."""
    if isinstance(value, dict | str):
        return [value]
    return list(value.tolist() if hasattr(value, "tolist") else value)
