"""Data layer of peft_puma: the eight paper datasets unified into one retrieval benchmark (arXiv 2309.08944, Sec. 4).

Public API (imported lazily, so ``import peft_puma.data`` stays cheap):

- :data:`DATASET_SPECS`: one spec per dataset, by short name (``cub``, ``cars``, ``sop``, ``inshop``, ``nabirds``,
  ``dogs``, ``flowers``, ``aircraft``).
- :func:`build_unified_dataset` / :func:`build_unified_dataset_with_report`: any subset into a ``DatasetDict`` with
  ``"train"`` and ``"test"`` splits of columns ``image``, ``label``, ``dataset``, ``role`` (see :mod:`.schema`).
- :func:`make_train_transform` / :func:`make_eval_transform`: the transforms of the published recipe (train: seeded
  per sample by (seed, epoch, position); eval: for ``Dataset.with_transform``).
- :func:`make_train_loader`: the training batches of one process, reproducible across processes, workers and resumes;
  its epoch orders :class:`ShuffleSampler` (published), :class:`DatasetBalancedSampler`, :class:`MPerClassSampler`.
- :func:`row_features` (the schema), :func:`column_values` (a column as a plain list, fast).

See docs/data.md.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "DATASET_SPECS": ".specs",
    "DatasetSpec": ".specs.base",
    "ParsedDataset": ".specs.base",
    "ParsedSplit": ".specs.base",
    "build_unified_dataset": ".builder",
    "build_unified_dataset_with_report": ".builder",
    "union_parsed": ".builder",
    "BuildReport": ".builder",
    "make_train_transform": ".transforms",
    "make_eval_transform": ".transforms",
    "ShuffleSampler": ".samplers",
    "DatasetBalancedSampler": ".samplers",
    "MPerClassSampler": ".samplers",
    "GlobalBatchSampler": ".samplers",
    "make_train_loader": ".loader",
    "TrainLoader": ".loader",
    "column_values": ".schema",
    "row_features": ".schema",
    "BadImage": ".images",
    "check_image": ".images",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
