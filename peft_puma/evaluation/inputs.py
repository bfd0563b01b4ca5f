"""Validation and normalisation of what ``evaluate_retrieval`` is given: embeddings, labels, dataset names, row roles.

Every user mistake becomes an :class:`~peft_puma.errors.InvalidInputError` that says what was wrong and what is
accepted, before any search starts (a 150k-row search is minutes of CPU time to waste on a typo).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from peft_puma.data.roles import ROLE_TRAIN, TEST_ROLES
from peft_puma.errors import InvalidInputError

# The roles of test rows (docs/spec.md section 7): "both" is a leave-one-out row (a query that is also in the
# gallery), "query"/"gallery" are In-shop style separate sets.
EVAL_ROLES: tuple[str, ...] = TEST_ROLES
TRAIN_ROLE = ROLE_TRAIN


def as_embeddings(embeddings: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """``(N, D)`` float32 tensor, L2-normalised row-wise (so inner product = cosine), detached from any graph.

    Rejects non-2-D input, empty input, NaN/inf values and all-zero rows (whose direction, hence cosine, is undefined).
    """
    tensor = torch.as_tensor(embeddings.detach() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings))
    if tensor.ndim != 2:
        raise InvalidInputError(f"embeddings must be 2-D (N, D); got shape {tuple(tensor.shape)}.")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise InvalidInputError(f"embeddings are empty (shape {tuple(tensor.shape)}); need N >= 1 rows of D >= 1.")
    if not (tensor.is_floating_point() or tensor.dtype in _INTEGER_DTYPES):
        raise InvalidInputError(f"embeddings must be real numbers; got dtype {tensor.dtype}.")
    tensor = tensor.to(device=device if device is not None else tensor.device, dtype=torch.float32)
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).squeeze(1)
        raise InvalidInputError(
            f"embeddings contain NaN or infinite values in {bad.numel()} row(s), first at row {int(bad[0])}."
        )
    norms = tensor.norm(dim=1)
    if not bool((norms > 0).all()):
        bad = torch.nonzero(norms == 0).squeeze(1)
        raise InvalidInputError(
            f"{bad.numel()} embedding row(s) are all zeros (first at row {int(bad[0])}): their cosine is undefined."
        )
    return tensor / norms.unsqueeze(1)


def as_labels(labels: Any, num_rows: int) -> np.ndarray:
    """``(N,)`` int64 class labels; any integer values (they are only compared for equality)."""
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1:
        raise InvalidInputError(f"labels must be 1-D (N,); got shape {array.shape}.")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(f"labels must be integers; got dtype {array.dtype}.")
    _check_length("labels", len(array), num_rows)
    return array.astype(np.int64, copy=False)


def as_strings(values: Sequence[str] | None, num_rows: int, name: str, default: str) -> list[str]:
    """``N`` strings (dataset names or roles); ``None`` means every row is ``default``."""
    if values is None:
        return [default] * num_rows
    if isinstance(values, str):
        raise InvalidInputError(f"{name} must be a sequence of N strings, one per row; got a single string.")
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    _check_length(name, len(values), num_rows)
    not_str = [v for v in values if not isinstance(v, str)]
    if not_str:
        raise InvalidInputError(f"{name} must be strings; got {type(not_str[0]).__name__} {not_str[0]!r}.")
    return values


def as_roles(roles: Sequence[str] | None, num_rows: int) -> np.ndarray:
    """``(N,)`` array of validated roles from :data:`EVAL_ROLES`; ``None`` means leave-one-out for every row."""
    values = np.asarray(as_strings(roles, num_rows, "roles", default="both"), dtype=object)
    unknown = sorted(set(values.tolist()) - set(EVAL_ROLES))
    if TRAIN_ROLE in unknown:
        raise InvalidInputError(
            f"roles contain {TRAIN_ROLE!r} ({int((values == TRAIN_ROLE).sum())} rows): training rows must not be "
            f"evaluated; pass only test rows, whose roles are {', '.join(map(repr, EVAL_ROLES))}."
        )
    if unknown:
        raise InvalidInputError(f"Unknown roles {unknown}; accepted: {', '.join(map(repr, EVAL_ROLES))}.")
    return values


def as_ks(ks: Sequence[int] | int) -> tuple[int, ...]:
    """Sorted, de-duplicated positive ints."""
    values = [ks] if isinstance(ks, int) else list(ks)
    if not values or not all(isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1 for k in values):
        raise InvalidInputError(f"ks must be a non-empty sequence of positive integers; got {ks!r}.")
    return tuple(sorted({int(k) for k in values}))


def global_labels(labels: np.ndarray, domains: Sequence[str]) -> np.ndarray:
    """Labels made unique across datasets: one id per distinct ``(dataset, label)`` pair (docs/spec.md section 7).

    The published code let label 3 of CUB and label 3 of Cars collide in the unified gallery; here they never do.
    """
    names = {name: code for code, name in enumerate(dict.fromkeys(domains))}
    domain_codes = np.fromiter((names[d] for d in domains), dtype=np.int64, count=len(domains))
    _, inverse = np.unique(np.stack([domain_codes, labels], axis=1), axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _check_length(name: str, length: int, num_rows: int) -> None:
    if length != num_rows:
        raise InvalidInputError(f"{name} has {length} entries but embeddings have {num_rows} rows; they must match.")
