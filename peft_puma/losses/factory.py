"""``make_loss``: CurricularFace and the baselines of the paper's Table 2 behind one name (docs/spec.md section 5).

The baselines come from pytorch-metric-learning, which implements them well; this module only picks the settings and
wraps them in :class:`~peft_puma.losses.precision.Float32Loss`. Settings: CosFace ``m = 0.35, s = 64`` and ArcFace
``m = 0.5 rad, s = 64``, those of the released PUMA code (docs/spec.md section 5); for Triplet, Margin,
Multi-Similarity, Proxy-Anchor and SoftTriple it gives none, so pytorch-metric-learning's defaults (those of each
loss's own paper) apply. The hyperbolic baseline ("Hyp") has no implementation in pytorch-metric-learning and is not
offered.

Every angular margin given to this factory is in radians, CurricularFace's unit and the paper's; ArcFace's is converted
to the degrees pytorch-metric-learning expects (``28.6`` there is ``0.5`` here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from peft_puma.errors import InvalidConfigError
from peft_puma.losses.curricularface import CurricularFaceLoss
from peft_puma.losses.precision import Float32Loss


@dataclass(frozen=True)
class LossSpec:
    """How to build one named loss, and what a training loop must know about it.

    ``build(num_classes, embedding_size, **settings)`` returns the bare loss module; ``settings`` are the published
    defaults, updated by the caller's overrides. ``proxy_based``: the loss owns one learnable proxy (or several) per
    class and needs ``num_classes``. ``min_samples_per_class``: the fewest samples of a class a batch must hold for
    that class to contribute (2 for pair losses: an anchor needs a positive).
    """

    build: Callable[..., nn.Module]
    proxy_based: bool
    min_samples_per_class: int
    settings: Mapping[str, Any] = field(default_factory=dict)


def _pml(class_name: str, proxy_based: bool) -> Callable[..., nn.Module]:
    def build(num_classes: int | None, embedding_size: int, **settings: Any) -> nn.Module:
        from pytorch_metric_learning import losses  # imported on use: it pulls in scikit-learn

        loss_class = getattr(losses, class_name)
        if proxy_based:
            return loss_class(num_classes=num_classes, embedding_size=embedding_size, **settings)
        return loss_class(**settings)

    return build


def _arcface(num_classes: int, embedding_size: int, *, margin: float, **settings: Any) -> nn.Module:
    return _pml("ArcFaceLoss", True)(num_classes, embedding_size, margin=math.degrees(margin), **settings)


def _curricularface(num_classes: int, embedding_size: int, **settings: Any) -> nn.Module:
    return CurricularFaceLoss(num_classes, embedding_size, **settings)


LOSS_SPECS: Mapping[str, LossSpec] = {
    "triplet": LossSpec(_pml("TripletMarginLoss", False), proxy_based=False, min_samples_per_class=2),
    "margin": LossSpec(_pml("MarginLoss", False), proxy_based=False, min_samples_per_class=2),
    "multi_similarity": LossSpec(_pml("MultiSimilarityLoss", False), proxy_based=False, min_samples_per_class=2),
    "proxy_anchor": LossSpec(_pml("ProxyAnchorLoss", True), proxy_based=True, min_samples_per_class=1),
    "soft_triple": LossSpec(_pml("SoftTripleLoss", True), proxy_based=True, min_samples_per_class=1),
    "cosface": LossSpec(_pml("CosFaceLoss", True), True, 1, {"margin": 0.35, "scale": 64.0}),
    "arcface": LossSpec(_arcface, True, 1, {"margin": 0.5, "scale": 64.0}),
    "curricularface": LossSpec(_curricularface, True, 1, {"scale": 32.0, "margin": 0.3, "t_mode": "per_class"}),
}

#: Every name ``make_loss`` accepts, in the order of the paper's Table 2, PUMA's own loss last.
LOSS_NAMES: tuple[str, ...] = tuple(LOSS_SPECS)
#: Losses whose parameters are class proxies (need ``num_classes``; the trainer's proxy group, lr x1e4).
PROXY_LOSSES: frozenset[str] = frozenset(name for name, spec in LOSS_SPECS.items() if spec.proxy_based)
#: Losses built on pairs within the batch: each class in a batch needs at least 2 samples to contribute.
PAIR_LOSSES: frozenset[str] = frozenset(name for name, spec in LOSS_SPECS.items() if spec.min_samples_per_class > 1)


def make_loss(name: str, *, num_classes: int | None = None, embedding_size: int = 128, **overrides: Any) -> nn.Module:
    """Build the loss called ``name`` (one of :data:`LOSS_NAMES`) with the paper's settings, updated by ``overrides``.

    The module's ``forward(embeddings, labels)`` returns a scalar, computed in float32 with autocast disabled. For a
    proxy loss ``parameters()`` are exactly its proxies; pair losses have none. ``num_classes`` is required for proxy
    losses and ignored by pair losses. Overrides are the loss's own constructor arguments (pytorch-metric-learning's
    for the baselines; angular margins in radians).
    """
    spec = loss_spec(name)
    _check_positive_int("embedding_size", embedding_size)
    if spec.proxy_based:
        if num_classes is None:
            raise InvalidConfigError(
                f"Loss {name!r} learns one proxy per class and needs num_classes (the number of training classes)."
            )
        _check_positive_int("num_classes", num_classes)
    settings = {**spec.settings, **overrides}
    try:
        loss = spec.build(num_classes, embedding_size, **settings)
    except TypeError as error:
        raise InvalidConfigError(f"Invalid settings {sorted(overrides)} for loss {name!r}: {error}") from error
    return loss if isinstance(loss, CurricularFaceLoss) else Float32Loss(loss)


def loss_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of ``name``; an unknown name is an :class:`InvalidConfigError` listing the known ones."""
    if name not in LOSS_SPECS:
        raise InvalidConfigError(f"Unknown loss {name!r}; accepted: {', '.join(LOSS_NAMES)}.")
    return LOSS_SPECS[name]


def min_samples_per_class(name: str) -> int:
    """Fewest samples of a class a batch must hold for the loss ``name`` to learn from that class (1 or 2)."""
    return loss_spec(name).min_samples_per_class


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfigError(f"{name} must be a positive int; got {value!r}.")
