"""Reading a dataset from a maintained copy on the HF Hub instead of its original download.

The Hub copies (ids in each spec's ``hub_id`` and in docs/data.md) carry the classification splits of the datasets,
not the class-disjoint retrieval split of docs/data.md: all their splits are merged here and re-split by class
with the same rule as the original folders. Their integer labels must follow the original class numbering
(``hub_class_order = "index"``) or their class names must be the original ones (``"name"``, Aircraft); the class
counts are checked, since the copies cannot be inspected from an offline machine. SOP, In-shop and NABirds have no
Hub copy that keeps their official lists or leaf classes: use their original folders.
"""

from __future__ import annotations

from collections.abc import Hashable

import datasets

from .schema import IMAGE_COLUMN, column_values
from .specs.base import DatasetSpec, ParsedDataset, ParsedSplit, ParseOptions

_LABEL_NAMES = ("label", "labels", "class", "class_id", "fine_label")


def _columns(spec: DatasetSpec, table: datasets.Dataset, hub_id: str) -> tuple[str, str]:
    features = table.features
    image = next((name for name, f in features.items() if isinstance(f, datasets.Image)), None)
    label = next((name for name, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    label = label or next((name for name in _LABEL_NAMES if name in features), None)
    if image is None or label is None:
        raise spec.error(
            f"Hub dataset {hub_id!r} has no image column and integer label column (columns: {list(features)}); "
            "it is not a copy this spec can read. Use the original download."
        )
    return image, label


def load_hub_table(spec: DatasetSpec, hub_id: str) -> datasets.Dataset:
    """All splits of the Hub copy, concatenated."""
    try:
        loaded = datasets.load_dataset(hub_id)
    except Exception as error:  # offline, unknown repo, script-only repo, ...: all end the same way for the user
        raise spec.error(
            f"cannot load Hub dataset {hub_id!r} ({type(error).__name__}: {error}). No local folder of that name "
            "exists either. Offline (HF_HUB_OFFLINE=1) only cached copies load; otherwise pass the folder of the "
            "original download."
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        return datasets.concatenate_datasets([loaded[split] for split in sorted(loaded)])
    return loaded


def parse_hub(spec: DatasetSpec, hub_id: str, options: ParseOptions | None = None) -> ParsedDataset:
    """Read and split a Hub copy of ``spec``'s dataset by the class rule of docs/data.md."""
    options = options or ParseOptions()
    if spec.hub_class_order is None:
        raise spec.error(
            f"no Hub copy is supported ({spec.split_rule} needs the original files); pass the folder of the original "
            f"download instead of {hub_id!r}"
        )
    table = load_hub_table(spec, hub_id)
    image_column, label_column = _columns(spec, table, hub_id)
    feature = table.features[label_column]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    labels = [int(x) for x in column_values(table, label_column)]
    if spec.hub_class_order == "name":
        if names is None:
            raise spec.error(f"Hub dataset {hub_id!r} has no class names; the split sorts classes by name")
        keys: list[Hashable] = [names[x] for x in labels]
    else:
        keys = list(labels)
    train, test = spec.split_rows(keys, [None] * len(keys), options)
    images = table.select_columns([image_column])
    if image_column != IMAGE_COLUMN:
        images = images.rename_column(image_column, IMAGE_COLUMN)

    def as_split(plan) -> ParsedSplit:  # noqa: ANN001 - the private _SplitPlan
        class_names = [names[k] if names is not None and isinstance(k, int) else str(k) for k in plan.classes]
        return ParsedSplit(images.select(plan.rows), plan.labels, plan.roles, class_names)

    return ParsedDataset(spec.name, as_split(train), as_split(test), source=hub_id)
