"""PUMA retrieval metric for HuggingFace ``evaluate``: Recall@k, MAP@R and R-Precision, per dataset and unified.

A thin adapter over :func:`peft_puma.evaluation.evaluate_retrieval` (docs/spec.md section 7), so both return the same
numbers. Load it offline from the installed package::

    from peft_puma.evaluation import load_metric        # or: evaluate.load(peft_puma.evaluation.METRIC_PATH)
    metric = load_metric()                                # config "default": predictions + references
    metric.compute(predictions=embeddings, references=labels, domains=names, roles=roles)

    metric = load_metric("multi_dataset")                 # domains and roles are columns: add_batch() them
    metric.add_batch(predictions=emb, references=lab, domains=names, roles=roles)
    metric.compute()

``evaluate`` stores every row in an Arrow file before computing; for 100k+ rows call ``evaluate_retrieval`` directly.
This file is copied into evaluate's module cache and imported from there, hence absolute imports only.
"""

import datasets
import evaluate

from peft_puma.evaluation.retrieval import evaluate_retrieval

_DESCRIPTION = """
Exact cosine nearest-neighbour retrieval metrics of image embeddings, as in PUMA (arXiv 2309.08944), Table 2:
Recall@k, MAP@R and R-Precision, leave-one-out (roles "both") or separate query/gallery sets (roles "query" and
"gallery", In-shop). With dataset names, also per-dataset results and the harmonic mean over datasets; the unified
result searches all queries against the union gallery with labels made unique per (dataset, label).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: embeddings, N vectors of equal length (float).
    references: N integer class labels.
    domains: N dataset names (a compute argument in config "default", a column in config "multi_dataset").
    roles: N strings from "both", "query", "gallery" (same placement as domains); default all "both".
    ks: the k of Recall@k, default (1, 2, 4, 8).
    unmatched_queries: "skip" (default) or "error", for queries with no gallery row of their class.
    backend: "auto", "torch" or "faiss".
Returns:
    {"unified": {...}, "per_dataset": {...}, "harmonic": {...}} with "recall@k", "map@r", "r_precision" as fractions,
    exactly as peft_puma.evaluation.evaluate_retrieval returns them.
Examples:
    >>> metric = load_metric()
    >>> metric.compute(predictions=[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], references=[0, 0, 1, 1], ks=[1])
    {'unified': {'recall@1': 1.0, 'map@r': 1.0, 'r_precision': 1.0, 'num_queries': 4, 'num_unmatched_queries': 0, \
'num_gallery': 4}}
"""

_CITATION = """
@inproceedings{kim2024puma,
  title={Universal Metric Learning with Parameter-Efficient Transfer Learning},
  author={Kim, Sungyeon and Jung, Donghyun and Kwak, Suha},
  year={2023},
  eprint={2309.08944},
  archivePrefix={arXiv}
}
@inproceedings{musgrave2020reality,
  title={A Metric Learning Reality Check},
  author={Musgrave, Kevin and Belongie, Serge and Lim, Ser-Nam},
  booktitle={ECCV},
  year={2020}
}
"""

_BASE_FEATURES = {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
_ROW_FEATURES = {"domains": datasets.Value("string"), "roles": datasets.Value("string")}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PumaRetrieval(evaluate.Metric):
    """Retrieval metrics of embeddings for ``evaluate``; configs ``"default"`` and ``"multi_dataset"``."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in ("default", "multi_dataset"):
            raise ValueError(f"Unknown config {self.config_name!r}; accepted: 'default', 'multi_dataset'.")
        features = dict(_BASE_FEATURES)
        if self.config_name == "multi_dataset":
            features.update(_ROW_FEATURES)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(features),
            reference_urls=["https://arxiv.org/abs/2309.08944"],
        )

    def _compute(
        self,
        predictions,
        references,
        domains=None,
        roles=None,
        ks=(1, 2, 4, 8),
        unmatched_queries="skip",
        backend="auto",
    ):
        return evaluate_retrieval(
            predictions,
            references,
            domains=None if domains is None else list(domains),
            ks=ks,
            roles=None if roles is None else list(roles),
            unmatched_queries=unmatched_queries,
            backend=backend,
        )
