"""One optimiser step of the published recipe (docs/spec.md section 6), shared by the trainer and the benchmarks.

A step embeds the batch, gathers the global batch for the loss (the local part keeps its gradient), adds the prompt
pool's orthogonality regulariser, then backpropagates through Accelerate (so fp16 gets its gradient scaling), clamps
every gradient element-wise, steps AdamW and the learning-rate schedule. The trainer calls :meth:`TrainingStep.forward`
and :meth:`TrainingStep.update` separately to stop on a non-finite loss before it changes any weight; the cost
benchmark times :meth:`TrainingStep.__call__`, the same work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .gather import gather_keep_local_grad, gather_labels
from .methods import parameter_groups
from .optim import build_optimizer, build_scheduler


class RetrievalObjective(nn.Module):
    """The model and the loss in one module, so that one DDP wrapper synchronises every gradient, proxies included.

    ``forward`` returns ``(metric loss, regulariser)``; the metric loss sees the gathered global batch.
    """

    def __init__(self, model: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.accelerator: Any = None

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.model(pixel_values=pixel_values).embeddings
        all_embeddings = gather_keep_local_grad(embeddings, self.accelerator)
        all_labels = gather_labels(labels, self.accelerator)
        return self.loss(all_embeddings, all_labels), self.model.regularization_loss()


@dataclass
class StepLosses:
    """The losses of one step: ``total`` (fp32, what is backpropagated) = ``metric`` + ``regulariser``."""

    total: torch.Tensor
    metric: torch.Tensor
    regulariser: torch.Tensor


@dataclass
class TrainingStep:
    """The prepared objective, optimiser and schedule of a run, and the step they take together."""

    objective: nn.Module
    optimizer: Any
    scheduler: Any
    trainable: list[nn.Parameter]
    groups: dict[str, int]  # trainable parameters per learning-rate group
    accelerator: Any
    grad_clamp: float | None

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> StepLosses:
        with self.accelerator.autocast():
            metric, regulariser = self.objective(pixel_values, labels)
        return StepLosses(metric.float() + regulariser.float(), metric, regulariser)

    def update(self, losses: StepLosses) -> None:
        self.accelerator.backward(losses.total)
        if self.grad_clamp is not None:
            self.accelerator.clip_grad_value_(self.trainable, self.grad_clamp)  # element-wise, model and proxies
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> StepLosses:
        losses = self.forward(pixel_values, labels)
        self.update(losses)
        return losses


def build_training_step(
    model: nn.Module, loss: nn.Module, config: Any, accelerator: Any, steps_per_epoch: int
) -> TrainingStep:
    """The step of ``config``'s recipe (a :class:`~peft_puma.training.TrainingConfig`) for ``model`` and ``loss``:
    one AdamW group per part with its learning-rate multiplier (the loss's proxies included), the step schedule,
    everything prepared by ``accelerator`` (the scheduler is stepped by hand, once per optimiser step, and registered
    for checkpointing)."""
    groups = parameter_groups(model)
    proxies = [p for p in loss.parameters() if p.requires_grad]
    if proxies:
        groups["proxies"] = proxies
    optimizer = build_optimizer(
        groups,
        learning_rate=config.learning_rate,
        lr_multipliers=config.lr_multipliers,
        weight_decay=config.weight_decay,
        betas=config.adam_betas,
        eps=config.adam_eps,
    )
    scheduler = build_scheduler(
        optimizer, steps_per_epoch=steps_per_epoch, step_epochs=config.lr_step_epochs, gamma=config.lr_gamma
    )
    objective, optimizer = accelerator.prepare(RetrievalObjective(model, loss), optimizer)
    accelerator.unwrap_model(objective).accelerator = accelerator
    accelerator.register_for_checkpointing(scheduler)  # a prepared scheduler would step num_processes times
    return TrainingStep(
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        trainable=[p for params in groups.values() for p in params],
        groups={name: sum(p.numel() for p in params) for name, params in groups.items()},
        accelerator=accelerator,
        grad_clamp=config.grad_clamp,
    )
