"""Retrieval evaluation of embeddings (docs/spec.md section 7): exact cosine kNN, Recall@k, MAP@R, R-Precision.

``evaluate_retrieval(embeddings, labels, domains, roles=...)`` returns the unified, per-dataset and harmonic results of
the paper's Table 2 in one call. The same numbers are available as a HuggingFace ``evaluate`` metric, loaded with
:func:`load_metric` (or ``evaluate.load(METRIC_PATH)``). Importing this package stays light: ``evaluate`` and faiss are
imported only when used.
"""

from __future__ import annotations

from peft_puma.evaluation.inputs import EVAL_ROLES
from peft_puma.evaluation.knn import BACKENDS, iter_nearest_neighbours, nearest_neighbours
from peft_puma.evaluation.metric_loading import METRIC_PATH, load_metric
from peft_puma.evaluation.retrieval import (
    UNMATCHED_POLICIES,
    evaluate_retrieval,
    harmonic_means,
    metric_names,
    unified_top1_rows,
)
from peft_puma.evaluation.table import format_table_row, table_row

__all__ = [
    "BACKENDS",
    "EVAL_ROLES",
    "METRIC_PATH",
    "UNMATCHED_POLICIES",
    "evaluate_retrieval",
    "format_table_row",
    "harmonic_means",
    "iter_nearest_neighbours",
    "load_metric",
    "metric_names",
    "nearest_neighbours",
    "table_row",
    "unified_top1_rows",
]
