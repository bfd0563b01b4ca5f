"""``python -m peft_puma.embed``: images of a folder or of a dataset -> an embeddings file (safetensors).

    python -m peft_puma.embed --adapter runs/uml_mini --images photos/ --output photos.safetensors
    python -m peft_puma.embed --adapter runs/uml_mini --dataset data/uml_mini --split test --output test.safetensors

The file holds ``embeddings`` (N x D, float32, L2-normalised), plus ``labels`` for a dataset; its metadata holds the
row descriptions as JSON (``paths`` for a folder; ``datasets`` and ``roles`` for a dataset). From Python:
:func:`embed_folder`, :func:`embed_dataset`, :func:`save_embeddings`, :func:`load_embeddings`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .errors import InvalidInputError, PUMAError

_ROW_FIELDS = {"dataset": "datasets", "role": "roles"}  # dataset columns kept in the file's metadata
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursively), as paths relative to it, sorted."""
    if not os.path.isdir(folder):
        raise InvalidInputError(f"{folder!r} is not a folder of images.")
    paths = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.relpath(os.path.join(root, name), folder))
    if not paths:
        raise InvalidInputError(f"No image file ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}.")
    return sorted(paths)


def embed_folder(
    model: nn.Module, folder: str, transform: Any, *, batch_size: int = 256, accelerator: Any = None, progress=True
) -> tuple[torch.Tensor, list[str]]:
    """``(embeddings, relative paths)`` of every image under ``folder``, with the eval ``transform``."""
    from PIL import Image

    from .training.inference import embed_images

    paths = list_images(folder)

    def load_batch(rows: list[int]) -> torch.Tensor:
        images = []
        for row in rows:
            with Image.open(os.path.join(folder, paths[row])) as image:
                images.append(image.convert("RGB"))
        return transform({"image": images})["pixel_values"]

    embeddings = embed_images(
        model, len(paths), load_batch, batch_size=batch_size, accelerator=accelerator, progress=progress
    )
    return embeddings, paths


def embed_dataset(
    model: nn.Module, dataset: Any, transform: Any, *, batch_size: int = 256, accelerator: Any = None, progress=True
) -> torch.Tensor:
    """Embeddings of every row of a ``datasets.Dataset`` with an ``image`` column, in row order."""
    from .training.inference import dataset_batch_loader, embed_images

    return embed_images(
        model,
        dataset.num_rows,
        dataset_batch_loader(dataset, transform),
        batch_size=batch_size,
        accelerator=accelerator,
        progress=progress,
    )


def save_embeddings(path: str, embeddings: torch.Tensor, labels: Any = None, **rows: Sequence[str]) -> None:
    """Write ``embeddings`` (and integer ``labels``) with safetensors; ``rows`` (lists of strings) go to metadata."""
    from safetensors.torch import save_file

    tensors = {"embeddings": embeddings.float().contiguous()}
    if labels is not None:
        tensors["labels"] = torch.as_tensor(list(labels), dtype=torch.int64)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={name: json.dumps(list(values)) for name, values in rows.items()})


def load_embeddings(path: str) -> dict[str, Any]:
    """``{"embeddings": tensor, "labels": tensor (if saved), <row field>: list, ...}`` of :func:`save_embeddings`."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        result: dict[str, Any] = {key: handle.get_tensor(key) for key in handle.keys()}
        for name, text in (handle.metadata() or {}).items():
            result[name] = json.loads(text)
    return result


def _load_split(path: str, split: str) -> Any:
    import datasets

    data = datasets.load_from_disk(path)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise InvalidInputError(f"{path} has splits {list(data)}, not {split!r}.")
        return data[split]
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peft_puma.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", help="trained adapter folder (the training output_dir)")
    parser.add_argument("--backbone", help="backbone source (default: the one the adapter was trained on)")
    parser.add_argument("--backbone_format", default=None, help="auto, transformers or timm")
    parser.add_argument("--zero_shot", action="store_true", help="embed with the frozen backbone (adapter off)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of image files (searched recursively)")
    source.add_argument("--dataset", help="a dataset saved with save_to_disk (a Dataset or a DatasetDict)")
    parser.add_argument("--split", default="test", help="split of a DatasetDict (default: test)")
    parser.add_argument("--output", required=True, help="embeddings file to write (.safetensors)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=None, help="default: the adapter's training resolution")
    args = parser.parse_args(argv)
    from accelerate import Accelerator

    from .data.transforms import make_eval_transform
    from .training.inference import load_for_inference

    try:
        model, processor, image_size = load_for_inference(
            args.adapter, args.backbone, args.backbone_format, zero_shot=args.zero_shot
        )
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        model.to(accelerator.device)
        transform = make_eval_transform(args.image_size or image_size, image_processor=processor)
        if args.images:
            embeddings, paths = embed_folder(
                model, args.images, transform, batch_size=args.batch_size, accelerator=accelerator
            )
            rows: dict[str, Any] = {"paths": paths}
            labels = None
        else:
            dataset = _load_split(args.dataset, args.split)
            embeddings = embed_dataset(model, dataset, transform, batch_size=args.batch_size, accelerator=accelerator)
            from .training.data import column

            columns = set(dataset.column_names)
            labels = column(dataset, "label") if "label" in columns else None
            rows = {plural: column(dataset, name) for name, plural in _ROW_FIELDS.items() if name in columns}
        if accelerator.is_main_process:
            save_embeddings(args.output, embeddings, labels, **rows)
            print(f"{embeddings.shape[0]} embeddings of size {embeddings.shape[1]} written to {args.output}")
    except PUMAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
