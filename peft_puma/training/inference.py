"""Embedding images with a trained model and scoring the test split as the paper's table (method.md section 7).

Used at the end of training, by ``python -m peft_puma.embed`` and by ``python -m peft_puma.evaluate``. Under several
processes each one embeds an equal share of the rows and the shares are gathered back into row order, so every
process ends with the same ``(N, D)`` tensor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.schema import DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, PIXEL_VALUES, ROLE_COLUMN


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

    The model runs in eval mode (every stochastic gate on, method.md section 2) and is put back in its former mode.
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
    from ..evaluation import evaluate_retrieval

    embeddings = embed_images(
        model,
        test.num_rows,
        dataset_batch_loader(test, transform),
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
        description="evaluating",
    )
    from ..data.schema import column_values as column

    return evaluate_retrieval(
        embeddings,
        column(test, LABEL_COLUMN),
        domains=column(test, DATASET_COLUMN),
        roles=column(test, ROLE_COLUMN),
        ks=tuple(ks),
    )


def results_markdown(result: dict[str, Any], title: str = "") -> str:
    """Recall@1 per dataset, Unified and Harmonic (the paper's Table 2 row) and the unified MAP@R / R-Precision."""
    from ..evaluation import table_row

    row = table_row(result, "recall@1")
    unified = result["unified"]
    lines = [title, ""] if title else []
    lines += [
        "Recall@1 (%):",
        "",
        "| " + " | ".join(row) + " |",
        "|" + "---|" * len(row),
        "| " + " | ".join(f"{value:.1f}" for value in row.values()) + " |",
        "",
        f"Unified MAP@R {100 * unified['map@r']:.1f} %, R-Precision {100 * unified['r_precision']:.1f} % "
        f"({unified['num_queries']} queries, gallery of {unified['num_gallery']}).",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- loading a model
class AdaptersOff(nn.Module):
    """A PUMA model with its adapter disabled: the frozen backbone's normalised CLS features (the paper's zero-shot
    baseline, method.md section 7 table)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> Any:
        with self.model.disable_adapter():
            return self.model(pixel_values=pixel_values)


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def check_adapter_source(adapter: str) -> None:
    """Refuse at once an adapter path that cannot be loaded, rather than after the Hub's retries.

    A local folder must hold the adapter's files; a path that is clearly local (it exists, or its parent folder does,
    or it starts with ``.``, ``/`` or ``~``) but is missing is an error; anything else is taken as a Hub id.
    """
    from ..errors import IncompatibleCheckpointError

    if os.path.isdir(adapter):
        missing = [name for name in ADAPTER_FILES if not os.path.isfile(os.path.join(adapter, name))]
        if missing:
            raise IncompatibleCheckpointError(
                f"{adapter} holds no complete adapter (missing {', '.join(missing)}); give the output_dir of a "
                "finished training run or a folder written by save_pretrained."
            )
        return
    if os.path.exists(adapter):
        raise IncompatibleCheckpointError(f"{adapter} is a file; give the adapter's folder (the training output_dir).")
    parent = os.path.dirname(os.path.normpath(adapter))
    if adapter.startswith((".", "/", "~")) or (parent and os.path.isdir(parent)):
        raise IncompatibleCheckpointError(
            f"The adapter folder {adapter} does not exist; give the output_dir of a finished training run "
            "(or a Hub repository id)."
        )


def load_for_inference(
    adapter: str | None = None,
    backbone: str | None = None,
    backbone_format: str | None = None,
    *,
    zero_shot: bool = False,
) -> tuple[nn.Module, Any, int | None]:
    """``(model in eval mode, image processor, image size)`` for embedding images.

    ``adapter``: a folder written by training (or by ``save_pretrained``); its backbone is read from the run file
    (``peft_puma_training.json``) or from ``adapter_config.json`` unless ``backbone`` is given. ``zero_shot``: the
    frozen backbone alone (``adapter`` may then be omitted).
    """
    from peft import get_peft_model

    from ..errors import IncompatibleCheckpointError, InvalidConfigError, PUMAError
    from ..tuners.puma.config import PUMAConfig
    from .backbone import load_backbone
    from .methods import load_trained
    from .report import read_run_file

    if adapter is not None:
        check_adapter_source(adapter)
    run = read_run_file(adapter) if adapter else None
    image_size = run.get("image_size") if run else None
    if backbone is None and run is not None:
        backbone, backbone_format = run["backbone"], backbone_format or run.get("backbone_format")
    if backbone is None and adapter is not None:
        backbone = PUMAConfig.from_pretrained(adapter).base_model_name_or_path
    if not backbone:
        raise InvalidConfigError("Give the backbone (--backbone): the adapter folder does not record it.")
    network, processor = load_backbone(backbone, backbone_format or "auto")
    if adapter is None:
        if not zero_shot:
            raise InvalidConfigError("Give an adapter folder, or ask for the zero-shot backbone (--zero_shot).")
        model: nn.Module = get_peft_model(network, PUMAConfig.from_preset("linear"))
    else:
        try:
            model = load_trained(network, adapter)
        except PUMAError:
            raise
        except Exception as error:  # safetensors' SafetensorError for a truncated or damaged weights file, ...
            raise IncompatibleCheckpointError(
                f"The adapter in {adapter} cannot be loaded ({type(error).__name__}: {error}); its files are damaged "
                "or incomplete. Save or train it again."
            ) from None
    if zero_shot:
        model = AdaptersOff(model)
    return model.eval(), processor, image_size
