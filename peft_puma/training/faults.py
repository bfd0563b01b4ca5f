"""Fault injection for the tests of crash safety, resumption and the non-finite-loss stop (issue: faults).

The environment variable ``PEFT_PUMA_TEST_FAULT`` holds one ``kind:step`` entry (comma-separated for several):

- ``exit_after_step:K``: hard exit (``os._exit``, no cleanup, like a kill) right after optimiser step ``K``;
- ``exit_in_save:K``: hard exit in the middle of writing the checkpoint of step ``K`` (files written, not yet
  renamed into place);
- ``nan_at_step:K``: the loss of step ``K`` (counted from 1) becomes NaN.

Unset, as in every real run, nothing here does anything.
"""

from __future__ import annotations

import os

import torch

FAULT_ENV = "PEFT_PUMA_TEST_FAULT"
EXIT_CODE = 86  # what a test sees from a run that was cut short on purpose


def _faults() -> dict[str, int]:
    spec = os.environ.get(FAULT_ENV, "")
    faults = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, step = entry.partition(":")
        faults[kind] = int(step)
    return faults


def maybe_exit_after_step(step: int) -> None:
    if _faults().get("exit_after_step") == step:
        os._exit(EXIT_CODE)


def maybe_crash_in_save(step: int) -> None:
    if _faults().get("exit_in_save") == step:
        os._exit(EXIT_CODE)


def maybe_poison_loss(loss: torch.Tensor, step: int) -> torch.Tensor:
    if _faults().get("nan_at_step") == step:
        return loss * float("nan")
    return loss
