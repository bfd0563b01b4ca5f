"""Embedding gallery and query images for search with the library's own pieces (docs/search.md).

The model comes from :func:`peft_puma.inference.loading.load_for_inference`, the images go through the eval transform
of :func:`peft_puma.data.transforms.make_eval_transform`, and folders, files and dataset rows are embedded by
:mod:`peft_puma.embed`, so an index holds exactly the vectors ``python -m peft_puma.embed`` writes. The transform's
size and statistics are recorded in the manifest, and queries are transformed from that record.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..data.images import list_images
from ..data.transforms import EvalTransform, make_eval_transform
from ..inference.loading import load_for_inference


def preprocessing_record(transform: EvalTransform) -> dict[str, Any]:
    """What the manifest keeps of the eval transform: enough to rebuild it without the image processor."""
    return {
        "transform": "eval",
        "image_size": transform.image_size,
        "resize_size": transform.resize_size,
        "mean": [float(value) for value in transform.mean.flatten()],
        "std": [float(value) for value in transform.std.flatten()],
    }


def transform_from_record(record: dict[str, Any]) -> EvalTransform:
    return make_eval_transform(record["image_size"], record["mean"], record["std"])


def load_model(
    model: dict[str, Any], adapter: str | None, allow_other_backbone: bool = False
) -> tuple[Any, Any, int | None]:
    """``(model, image processor, image size)`` of ``load_for_inference`` for an identity
    (:func:`peft_puma.search.identity.model_identity`): its backbone and zero-shot choice, with ``adapter``."""
    return load_for_inference(
        adapter,
        model["backbone"],
        model["backbone_format"],
        zero_shot=model["zero_shot"],
        allow_other_backbone=allow_other_backbone,
    )


def expand_query_paths(paths: Sequence[str]) -> list[str]:
    """Query image paths as given, a folder replaced by its image files (sorted, recursively)."""
    expanded: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            expanded += [os.path.join(path, name) for name in list_images(path)]
        else:
            expanded.append(path)
    return expanded
