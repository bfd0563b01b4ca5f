"""Retrieval examples of an evaluation: a few fixed test queries per dataset and what a model retrieves for them in
the unified gallery, as a contact sheet (docs/search.md, "Retrieval examples").

Metric-learning results are judged by looking at them as much as by Recall@1. The queries are drawn per dataset from
a generator seeded by ``seed`` over the test split alone, so every method evaluated on the same split shows the same
queries, and one sheet can put several models side by side (one row per query and model). The search is the
evaluation's own: exact cosine neighbours among every gallery row of the split (leave-one-out rows and In-shop's
gallery lists), the query itself left out, as in docs/spec.md section 7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from ..data.schema import (
    CLASS_NAME_COLUMN,
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    ROLE_BOTH,
    ROLE_COLUMN,
    ROLE_GALLERY,
    ROLE_QUERY,
    column_values,
)
from .grid import Tile, contact_sheet, save_grid
from .knn import nearest_neighbours


def pick_queries(domains: Sequence[str], roles: Sequence[str], per_dataset: int = 2, seed: int = 0) -> list[int]:
    """Rows of ``per_dataset`` query images of each dataset (in order of first appearance), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    by_dataset: dict[str, list[int]] = {}
    for row, (domain, role) in enumerate(zip(domains, roles)):
        if role in (ROLE_BOTH, ROLE_QUERY):
            by_dataset.setdefault(domain, []).append(row)
    picked: list[int] = []
    for rows in by_dataset.values():
        chosen = rng.choice(len(rows), size=min(per_dataset, len(rows)), replace=False)
        picked.extend(rows[i] for i in sorted(chosen))
    return picked


def example_tiles(
    embeddings: Mapping[str, torch.Tensor], test: Any, queries: Sequence[int], k: int = 5
) -> list[list[Tile]]:
    """Rows of tiles: for each query and each named model, the query then its ``k`` nearest gallery images."""
    labels = column_values(test, LABEL_COLUMN)
    domains = column_values(test, DATASET_COLUMN)
    roles = column_values(test, ROLE_COLUMN)
    names = _class_names(test, labels)
    gallery = [row for row, role in enumerate(roles) if role in (ROLE_BOTH, ROLE_GALLERY)]
    position = {row: index for index, row in enumerate(gallery)}
    self_index = torch.tensor([position.get(row, -1) for row in queries], dtype=torch.long)
    k = min(k, len(gallery) - 1)  # a tiny split may have fewer gallery images than asked for
    found = {}
    for name, vectors in embeddings.items():
        vectors = F.normalize(vectors.float(), dim=1)
        found[name] = nearest_neighbours(vectors[list(queries)], vectors[gallery], k, self_index=self_index)
    images = test.select_columns([IMAGE_COLUMN])
    rows = []
    for index, query in enumerate(queries):
        query_image = images[int(query)][IMAGE_COLUMN]
        for name, (scores, neighbours) in found.items():
            caption = f"{name}: {domains[query]}" if len(embeddings) > 1 else f"query {domains[query]}"
            row = [Tile(query_image, caption, names[query], frame="query")]
            for rank, (score, neighbour) in enumerate(zip(scores[index].tolist(), neighbours[index].tolist()), 1):
                hit = gallery[neighbour]
                frame = "match" if labels[hit] == labels[query] else "miss"
                detail = f"{domains[hit]}/{names[hit]}"
                row.append(Tile(images[hit][IMAGE_COLUMN], f"#{rank} {score:.2f}", detail, frame=frame))
            rows.append(row)
    return rows


def _class_names(test: Any, labels: Sequence[int]) -> list[str]:
    """Each row's class as its source names it (a collection's ``class_name`` column, a ``ClassLabel``'s names), else
    ``label N``."""
    if CLASS_NAME_COLUMN in test.column_names:
        return [str(name) for name in column_values(test, CLASS_NAME_COLUMN)]
    feature = test.features.get(LABEL_COLUMN)
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(int(label)) for label in labels]
    return [f"label {label}" for label in labels]


def write_retrieval_examples(
    path: str,
    embeddings: Mapping[str, torch.Tensor],
    test: Any,
    *,
    k: int = 5,
    per_dataset: int = 2,
    seed: int = 0,
) -> str:
    """Write the sheet of :func:`example_tiles` for the seeded queries of :func:`pick_queries`; returns ``path``.

    ``embeddings``: one ``(N, D)`` tensor of the test rows per model name (one name: a single model's sheet).
    """
    queries = pick_queries(column_values(test, DATASET_COLUMN), column_values(test, ROLE_COLUMN), per_dataset, seed)
    save_grid(contact_sheet(example_tiles(embeddings, test, queries, k)), path)
    return path
