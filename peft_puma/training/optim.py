"""The optimiser and learning-rate schedule of the published recipe (docs/spec.md section 6).

AdamW (betas 0.9/0.999, eps 1e-8, weight decay 1e-4 on every group), one parameter group per part with the base lr
times its multiplier (prompt pool, adapters, head x10; loss proxies x1e4; LoRA x10, a fine-tuned backbone x1), and a
step schedule: x0.5 every 20 epochs, no warmup. The schedule is stepped per optimiser step and computed from the step
count, so restoring the step count restores the learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def build_optimizer(
    groups: Mapping[str, Sequence[nn.Parameter]],
    *,
    learning_rate: float,
    lr_multipliers: Mapping[str, float],
    weight_decay: float,
    betas: Sequence[float],
    eps: float,
) -> torch.optim.AdamW:
    """AdamW over the named groups; each group records its ``name`` for logging."""
    param_groups = [
        {"params": list(params), "lr": learning_rate * lr_multipliers[name], "name": name}
        for name, params in groups.items()
        if params
    ]
    return torch.optim.AdamW(param_groups, betas=(betas[0], betas[1]), eps=eps, weight_decay=weight_decay)


class StepEveryEpochs:
    """``gamma ** (epoch // step_epochs)`` with ``epoch = step // steps_per_epoch``: a picklable lr factor."""

    def __init__(self, steps_per_epoch: int, step_epochs: int, gamma: float) -> None:
        self.steps_per_epoch, self.step_epochs, self.gamma = steps_per_epoch, step_epochs, gamma

    def __call__(self, step: int) -> float:
        return self.gamma ** ((step // self.steps_per_epoch) // self.step_epochs)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, step_epochs: int, gamma: float
) -> LambdaLR:
    return LambdaLR(optimizer, StepEveryEpochs(steps_per_epoch, step_epochs, gamma))
