"""Run under 2 processes (``accelerate launch --multi_gpu --num_processes 2``) by test_distributed.py.

Checks, on every process, the two collective operations of training and evaluation and writes what it saw to
``<out>/rank<r>.json``: the gather of the loss (values of all processes in process order, gradient only into the local
part) and the sharded embedding of evaluation (every row once, in row order, with a row count that does not divide).
"""

from __future__ import annotations

import json
import os
import sys

import torch
from accelerate import Accelerator

from peft_puma.inference.embedding import embed_images
from peft_puma.training.gather import gather_keep_local_grad, gather_labels


class _Output:
    def __init__(self, embeddings: torch.Tensor) -> None:
        self.embeddings = embeddings


class _RowIdentity(torch.nn.Module):
    """'Embeds' a batch of row numbers as (row, row^2): shows which rows each process embedded, in which order."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, pixel_values: torch.Tensor) -> _Output:
        return _Output(torch.stack([pixel_values, pixel_values**2], dim=1) + self.anchor)


def main(out: str) -> None:
    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    local = torch.full((3, 2), float(rank + 1), requires_grad=True)
    gathered = gather_keep_local_grad(local, accelerator)
    weights = torch.arange(gathered.numel(), dtype=torch.float32).view_as(gathered)
    (gathered * weights).sum().backward()
    labels = gather_labels(torch.tensor([10 * rank, 10 * rank + 1, 10 * rank + 2]), accelerator)
    rows = embed_images(
        _RowIdentity(), 7, lambda r: torch.tensor(r, dtype=torch.float32), batch_size=2, accelerator=accelerator
    )
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump(
            {
                "world": world,
                "gathered": gathered.tolist(),
                "local_grad": local.grad.tolist(),
                "expected_grad": weights[3 * rank : 3 * rank + 3].tolist(),
                "labels": labels.tolist(),
                "rows": rows.tolist(),
            },
            handle,
        )
    # Leave the process group before the interpreter exits, as the library's commands do: a gloo group torn down by
    # interpreter exit can abort one rank ("terminate called without an active exception") after its work is done.
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
