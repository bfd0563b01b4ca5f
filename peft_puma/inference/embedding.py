"""Embedding rows of images with a model across processes, and scoring a test split as the paper's table
(docs/spec.md section 7).

Used at the end of training, by ``python -m peft_puma.embed``, ``python -m peft_puma.evaluate`` and
``python -m peft_puma.search``. Under several processes each one embeds an equal share of the rows and the shares are
gathered back into row order, so every process ends with the same ``(N, D)`` tensor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.images import FolderCheck, check_folder, open_rgb, require_readable
from ..data.schema import IMAGE_COLUMN, PIXEL_VALUES
from ..evaluation.scoring import score_split


@torch.no_grad()
def embed_images(
    model: nn.Module,
    num_rows: int,
    load_batch: Callable[[list[int]], torch.Tensor],
    *,
    batch_size: int = 256,
    accelerator: Any = None,
    progress: bool = True,
    description: str = "embedding",
) -> torch.Tensor:
    """``(num_rows, D)`` float32 embeddings in row order; ``load_batch(rows)`` returns their ``pixel_values``.

    The model runs in eval mode (every stochastic gate on, docs/spec.md section 2) and is put back in its former
    mode.
    """
    num_processes = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    # Pad the row list (repeating the first rows) so that every process embeds equally many rows in equal batches.
    share = -(-num_rows // num_processes)
    padded = list(range(num_rows)) + list(range(share * num_processes - num_rows))
    mine = padded[rank::num_processes]
    was_training = model.training
    model.eval()
    pieces = []
    show = progress and rank == 0
    for start in tqdm(range(0, share, batch_size), desc=description, disable=not show, unit="batch"):
        rows = mine[start : start + batch_size]
        pixel_values = load_batch(rows).to(device)
        embeddings = model(pixel_values=pixel_values).embeddings.float()
        pieces.append(embeddings)
    model.train(was_training)
    local = torch.cat(pieces) if pieces else torch.zeros(0, 0, device=device)
    if num_processes == 1:
        return local.cpu()
    gathered = accelerator.gather(local).cpu()  # (num_processes * share, D), process after process
    order = torch.tensor(padded).view(share, num_processes).t().reshape(-1)  # row of each gathered line
    result = torch.empty(num_rows, gathered.shape[1])
    result[order] = gathered  # padded duplicates write the same row twice, with the same values
    return result


def dataset_batch_loader(dataset: Any, transform: Callable[[dict[str, list]], dict[str, Any]]):
    """``load_batch`` for :func:`embed_images` over a ``datasets.Dataset`` with an ``image`` column."""
    images = dataset.select_columns([IMAGE_COLUMN])

    def load_batch(rows: list[int]) -> torch.Tensor:
        return transform({IMAGE_COLUMN: images[rows][IMAGE_COLUMN]})[PIXEL_VALUES]

    return load_batch


def evaluate_split(
    model: nn.Module,
    test: Any,
    transform: Callable[[dict[str, list]], dict[str, Any]],
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 256,
    accelerator: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The result mapping of :func:`peft_puma.evaluation.evaluate_retrieval` on the test rows of a unified dataset:
    unified, per-dataset and harmonic Recall@k, MAP@R and R-Precision (fractions)."""
    embeddings = embed_split(model, test, transform, batch_size=batch_size, accelerator=accelerator, progress=progress)
    return score_split(embeddings, test, ks)


def embed_split(
    model: nn.Module,
    test: Any,
    transform: Callable[[dict[str, list]], dict[str, Any]],
    *,
    batch_size: int = 256,
    accelerator: Any = None,
    progress: bool = True,
    description: str = "evaluating",
) -> torch.Tensor:
    """``(N, D)`` embeddings of every row of a split, in row order (every process ends with all of them)."""
    return embed_images(
        model,
        test.num_rows,
        dataset_batch_loader(test, transform),
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
        description=description,
    )


def embed_folder(
    model: nn.Module,
    folder: str,
    transform: Any,
    *,
    on_error: str = "stop",
    checked: FolderCheck | None = None,
    batch_size: int = 256,
    accelerator: Any = None,
    progress=True,
) -> tuple[torch.Tensor, list[str]]:
    """``(embeddings, relative paths)`` of the images under ``folder``, with the eval ``transform``.

    Every file is checked first (:func:`~peft_puma.data.images.check_folder`). ``on_error="stop"`` (default): an
    unreadable file raises ``InvalidInputError`` naming it, before anything is embedded. ``on_error="skip"``:
    unreadable files are left out of both the embeddings and the paths (if none is readable, ``InvalidInputError``).
    To know which were skipped, call ``check_folder`` yourself and pass its result as ``checked`` (then the files are
    not decoded twice): ``checked.bad`` lists them.
    """
    check = checked if checked is not None else check_folder(folder, accelerator=accelerator, progress=progress)
    paths = require_readable(folder, check, on_error)

    def load_batch(rows: list[int]) -> torch.Tensor:
        images = [open_rgb(os.path.join(folder, paths[row])) for row in rows]
        return transform({IMAGE_COLUMN: images})[PIXEL_VALUES]

    embeddings = embed_images(
        model, len(paths), load_batch, batch_size=batch_size, accelerator=accelerator, progress=progress
    )
    return embeddings, list(paths)


def embed_dataset(
    model: nn.Module, dataset: Any, transform: Any, *, batch_size: int = 256, accelerator: Any = None, progress=True
) -> torch.Tensor:
    """Embeddings of every row of a ``datasets.Dataset`` with an ``image`` column, in row order."""
    return embed_split(
        model,
        dataset,
        transform,
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
        description="embedding",
    )
