"""Metric-learning losses of PUMA (docs/spec.md section 5): CurricularFace and the baselines of the paper's Table 2.

``make_loss(name, num_classes=..., embedding_size=...)`` builds any of :data:`LOSS_NAMES`. A training loop reads
:data:`PROXY_LOSSES` (the loss's parameters are class proxies: their own optimiser group, lr x1e4, docs/spec.md
section 6) and :data:`PAIR_LOSSES` / :func:`min_samples_per_class` (batches need two samples of a class for it to
contribute).
"""

from __future__ import annotations

from peft_puma.losses.curricularface import T_MODES, CurricularFaceLoss
from peft_puma.losses.factory import (
    LOSS_NAMES,
    LOSS_SPECS,
    PAIR_LOSSES,
    PROXY_LOSSES,
    LossSpec,
    loss_spec,
    make_loss,
    min_samples_per_class,
)
from peft_puma.losses.precision import Float32Loss

__all__ = [
    "LOSS_NAMES",
    "LOSS_SPECS",
    "PAIR_LOSSES",
    "PROXY_LOSSES",
    "T_MODES",
    "CurricularFaceLoss",
    "Float32Loss",
    "LossSpec",
    "loss_spec",
    "make_loss",
    "min_samples_per_class",
]
