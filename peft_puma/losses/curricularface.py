"""CurricularFace, PUMA's default loss, as the PUMA authors' published code computes it (arXiv 2309.08944).

Huang et al., "CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition" (CVPR 2020), with the
per-class curriculum statistic and the update order of the PUMA code. For an embedding ``x`` of class ``y`` and proxies
``W`` (one per class), with ``c_j = cos(x, W_j)`` and ``cos(theta) = c_y``:

- target logit: ``cos(theta + m)`` where ``cos(theta) > cos(pi - m)``, else ``cos(theta) - m * sin(pi - m)``
  (the fallback keeps the logit monotonic in ``theta`` when ``theta + m`` would pass ``pi``);
- hard negatives: a negative with ``c_j`` above the target logit *as finally used* (after the fallback) becomes
  ``c_j * (c_j + t)``: as ``t`` grows with training, hard negatives weigh more (the curriculum); other negatives stay
  ``c_j``;
- ``t``: per class (default), the EMA with momentum 0.99 of the class's mean target cosine in the batch, starting at 0;
  a sample's hard negatives use the ``t`` of the sample's own class. Option ``t_mode="scalar"``: one ``t``, the EMA of
  the batch's mean target cosine (the original CurricularFace paper);
- order (``t_update``): by default (``"after_loss"``, the PUMA code) a batch's logits use the ``t`` from before the
  batch, and ``t`` is updated from the batch's target cosines afterwards; ``"before_loss"`` (Huang et al.'s code)
  updates ``t`` first and uses the new value in the same forward. ``t`` changes in training mode only, so the first
  training batch's loss equals the eval-mode loss on that batch under the default order;
- loss: cross-entropy over ``s * logits`` with ``s = 32``, ``m = 0.3``.

See docs/losses.md.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from peft_puma.errors import InvalidConfigError, InvalidInputError

TMode = Literal["per_class", "scalar"]
T_MODES: tuple[str, ...] = ("per_class", "scalar")
TUpdate = Literal["after_loss", "before_loss"]
#: When a training forward updates ``t``: after computing the batch's logits (PUMA's code) or before (Huang et al.'s).
T_UPDATES: tuple[str, ...] = ("after_loss", "before_loss")

# sin(theta) = sqrt(1 - cos^2) has an infinite derivative at cos = +-1; the floor keeps gradients finite and moves the
# target logit by at most sin(m) * 1e-6.
_SIN_SQUARED_FLOOR = 1e-12


class CurricularFaceLoss(nn.Module):
    """CurricularFace over learnable class proxies; ``forward(embeddings, labels)`` returns the mean loss.

    Args:
        num_classes: ``C``, the number of training classes (one proxy each).
        embedding_size: size of the embeddings and proxies (128 in the paper).
        scale: ``s`` (32).
        margin: ``m`` in radians (0.3).
        t_mode: ``"per_class"`` (default, the PUMA code) or ``"scalar"`` (the CurricularFace paper).
        t_momentum: EMA momentum of ``t`` (0.99: ``t <- 0.99 * t + 0.01 * batch mean``).
        t_update: ``"after_loss"`` (default, the PUMA code: a batch's loss uses ``t`` from before the batch, then ``t``
            is updated from it) or ``"before_loss"`` (Huang et al.'s code: update first, use the new ``t``).

    ``parameters()`` yields exactly the proxies ``W`` (``C x embedding_size``), so a trainer can give them their own
    optimiser group (lr x1e4, docs/training.md). ``t`` is a buffer: saved with the state dict, never trained. The loss
    is computed in float32 with autocast disabled, whatever the caller's precision.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int = 128,
        *,
        scale: float = 32.0,
        margin: float = 0.3,
        t_mode: TMode = "per_class",
        t_momentum: float = 0.99,
        t_update: TUpdate = "after_loss",
    ) -> None:
        super().__init__()
        _check_config(num_classes, embedding_size, scale, margin, t_mode, t_momentum, t_update)
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.scale, self.margin = float(scale), float(margin)
        self.t_mode, self.t_momentum, self.t_update = t_mode, float(t_momentum), t_update
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.kaiming_uniform_(self.proxies, mode="fan_out")
        self.register_buffer("t", torch.zeros(num_classes if t_mode == "per_class" else ()))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``scale * logits(embeddings, labels)``."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.cross_entropy(self.scale * self.logits(embeddings, labels), labels.long())

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Modulated cosine logits, ``(B, C)`` float32, before the scale ``s``.

        In training mode this also updates ``t`` from the batch's target cosines, after the logits are computed
        (``t_update="after_loss"``) or before (``"before_loss"``); in eval mode ``t`` is only read.
        """
        labels = _check_inputs(embeddings, labels, self.num_classes, self.embedding_size)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosine = self.cosine(embeddings)
            target_cosine = cosine.gather(1, labels.unsqueeze(1))
            target_logit = torch.where(
                target_cosine > math.cos(math.pi - self.margin),
                self._cos_theta_plus_m(target_cosine),
                target_cosine - self.margin * math.sin(math.pi - self.margin),
            )
            if self.training and self.t_update == "before_loss":
                self._update_t(target_cosine.detach().squeeze(1), labels)
            t = self.t[labels].unsqueeze(1) if self.t_mode == "per_class" else self.t
            hard = cosine > target_logit  # the threshold is the target logit as used, fallback included
            logits = torch.where(hard, cosine * (cosine + t), cosine)
            if self.training and self.t_update == "after_loss":
                self._update_t(target_cosine.detach().squeeze(1), labels)
            return logits.scatter(1, labels.unsqueeze(1), target_logit)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` float32 cosine similarities between embeddings and proxies, clamped to [-1, 1]."""
        embeddings = F.normalize(embeddings.float(), dim=1)
        proxies = F.normalize(self.proxies.float(), dim=1)
        return (embeddings @ proxies.T).clamp(-1.0, 1.0)

    def _cos_theta_plus_m(self, cos_theta: torch.Tensor) -> torch.Tensor:
        sin_theta = (1.0 - cos_theta.square()).clamp(min=_SIN_SQUARED_FLOOR).sqrt()
        return cos_theta * math.cos(self.margin) - sin_theta * math.sin(self.margin)

    @torch.no_grad()
    def _update_t(self, target_cosine: torch.Tensor, labels: torch.Tensor) -> None:
        """EMA of the mean target cosine: per class present in the batch, or over the whole batch (scalar mode)."""
        keep = self.t_momentum
        if self.t_mode == "scalar":
            self.t.mul_(keep).add_((1.0 - keep) * target_cosine.mean())
            return
        sums = torch.zeros_like(self.t).index_add_(0, labels, target_cosine.to(self.t.dtype))
        counts = torch.bincount(labels, minlength=self.num_classes).to(self.t.dtype)
        present = counts > 0
        self.t[present] = keep * self.t[present] + (1.0 - keep) * sums[present] / counts[present]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, scale={self.scale}, "
            f"margin={self.margin}, t_mode={self.t_mode!r}, t_momentum={self.t_momentum}, t_update={self.t_update!r}"
        )


def _check_config(
    num_classes: int,
    embedding_size: int,
    scale: float,
    margin: float,
    t_mode: str,
    t_momentum: float,
    t_update: str,
) -> None:
    for name, value in (("num_classes", num_classes), ("embedding_size", embedding_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidConfigError(f"CurricularFace {name} must be a positive int; got {value!r}.")
    if not scale > 0:
        raise InvalidConfigError(f"CurricularFace scale must be > 0; got {scale!r}.")
    if not 0 <= margin < math.pi / 2:
        raise InvalidConfigError(f"CurricularFace margin (radians) must be in [0, pi/2); got {margin!r}.")
    if t_mode not in T_MODES:
        raise InvalidConfigError(
            f"CurricularFace t_mode must be one of {', '.join(map(repr, T_MODES))}; got {t_mode!r}."
        )
    if not 0 <= t_momentum <= 1:
        raise InvalidConfigError(f"CurricularFace t_momentum must be in [0, 1]; got {t_momentum!r}.")
    if t_update not in T_UPDATES:
        raise InvalidConfigError(
            f"CurricularFace t_update must be one of {', '.join(map(repr, T_UPDATES))}; got {t_update!r}."
        )


def _check_inputs(
    embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int, embedding_size: int
) -> torch.Tensor:
    if embeddings.ndim != 2 or embeddings.shape[1] != embedding_size:
        raise InvalidInputError(
            f"CurricularFace expects embeddings of shape (B, {embedding_size}); got {tuple(embeddings.shape)}."
        )
    if labels.shape != (embeddings.shape[0],):
        raise InvalidInputError(
            f"CurricularFace expects labels of shape ({embeddings.shape[0]},); got {tuple(labels.shape)}."
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InvalidInputError(f"CurricularFace labels must be integer class ids; got dtype {labels.dtype}.")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise InvalidInputError(
            f"CurricularFace labels must lie in [0, {num_classes - 1}]; got [{int(labels.min())}, {int(labels.max())}]."
        )
    return labels
