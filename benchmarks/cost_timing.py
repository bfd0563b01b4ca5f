"""Timing on shared cores: every task once per round, in a fresh random order, medians over the timed rounds.

A change of load on the cores (another engineer's job) then hits every method alike instead of the one that happened
to run at that moment. Wall and process CPU time are both recorded: CPU time does not stretch with the load.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from cost_models import Runtime, embed
from cost_records import Timing
from torch import nn

Key = TypeVar("Key", bound=Hashable)


def interleaved_timings(
    tasks: dict[Key, Callable[[], Any]], warmup: int, repeats: int, runtime: Runtime, seed: int = 0
) -> dict[Key, Timing]:
    """Wall and CPU seconds of every task: ``warmup + repeats`` rounds, each running all tasks in a fresh random
    order; the warm-up rounds are dropped."""
    order = list(tasks)
    rng = random.Random(seed)
    samples: dict[Key, list[tuple[float, float]]] = {name: [] for name in tasks}
    for round_index in range(warmup + repeats):
        rng.shuffle(order)
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            tasks[name]()
            runtime.synchronize()
            measured = (time.perf_counter() - wall, time.process_time() - cpu)
            if round_index >= warmup:
                samples[name].append(measured)
    return {
        name: Timing(
            wall_s=statistics.median(w for w, _ in values),
            cpu_s=statistics.median(c for _, c in values),
            wall_samples_s=[round(w, 5) for w, _ in values],
        )
        for name, values in samples.items()
    }


def inference_task(model: nn.Module, pixel_values: torch.Tensor, runtime: Runtime) -> Callable[[], None]:
    """Embeddings of one batch in eval mode, under ``torch.inference_mode`` and the runtime's autocast."""
    model.eval()

    def run() -> None:
        with torch.inference_mode(), runtime.autocast():
            embed(model, pixel_values)

    return run


def train_task(step: Callable[..., Any], pixel_values: torch.Tensor, labels: torch.Tensor) -> Callable[[], Any]:
    """One call of the trainer's ``TrainingStep`` on a fixed batch: forward, loss, backward, clamp, AdamW, schedule."""
    return lambda: step(pixel_values, labels)
