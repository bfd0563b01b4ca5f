"""``python -m peft_puma.embed``: images of a folder or of a dataset -> an embeddings file (safetensors).

    python -m peft_puma.embed --adapter runs/uml_mini --images photos/ --output photos.safetensors
    python -m peft_puma.embed --adapter runs/uml_mini --dataset data/uml_mini --split test --output test.safetensors

The file holds ``embeddings`` (N x D, float32, L2-normalised), plus ``labels`` for a dataset; its metadata holds the
row descriptions as JSON (``paths`` for a folder; ``datasets`` and ``roles`` for a dataset).

Unreadable images of a folder (not an image, truncated, corrupt, a decompression bomb) are found before the model loads,
by fully decoding every file once (on the main process; the verdict is shared with the others, so every process embeds
the same rows). ``--on_error stop`` (default) exits with status 2 naming the first bad file; ``--on_error skip`` embeds
the readable images only, prints the skipped files with their reasons on stderr and records them in the file's
metadata as ``skipped`` (a JSON list of ``{"path", "reason"}``; ``[]`` when none was skipped). Other input mistakes (a
missing ``--images`` folder, an ``--output`` that is a folder or cannot be written) also exit with status 2 before the
model loads, and the output file is written whole or not at all.

From Python: :func:`embed_folder` (``on_error="stop"`` or ``"skip"``; returns ``(embeddings, paths)`` of the embedded
images), :func:`check_images` (``(good, bad)`` of a folder: readable relative paths and :class:`UnreadableImage`
records, to report the skipped files or to pass on as ``checked=``), :func:`embed_dataset`, :func:`save_embeddings`,
:func:`load_embeddings`.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from PIL import Image, UnidentifiedImageError
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from .data.schema import column_values
from .data.transforms import make_eval_transform
from .errors import ForeignContentError, InvalidConfigError, InvalidInputError, PUMAError
from .inference.embedding import embed_images, embed_split
from .inference.loading import load_for_inference
from .inference.options import add_image_source_options, add_model_options

_ROW_FIELDS = {"dataset": "datasets", "role": "roles"}  # dataset columns kept in the file's metadata
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ON_ERROR_CHOICES = ("stop", "skip")
_NAMED_IN_MESSAGES = 3  # unreadable files named in a one-line message (the rest are counted)


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursively), as paths relative to it, sorted."""
    if not os.path.exists(folder):
        raise InvalidInputError(f"The image folder {folder!r} does not exist.")
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


# --------------------------------------------------------------------------------------------- unreadable images
@dataclass(frozen=True)
class UnreadableImage:
    """An image file that cannot be embedded: its ``path`` relative to the folder and why (one line)."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


class ImageCheck(NamedTuple):
    """:func:`check_images` of a folder: ``good`` relative paths (sorted) and the ``bad`` files, in path order."""

    good: list[str]
    bad: list[UnreadableImage]


def _read_errors() -> tuple[type[BaseException], ...]:
    # What PIL raises on a file it cannot open or decode: UnidentifiedImageError (an OSError) for a non-image,
    # OSError for truncated or broken data, ValueError / SyntaxError / EOFError / struct.error / IndexError /
    # TypeError from its format parsers on malformed headers, DecompressionBombError for absurd sizes.
    return (
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
        IndexError,
        TypeError,
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not an image file PIL can read (wrong extension or corrupt header)"
    if isinstance(error, OSError) and error.strerror:  # FileNotFoundError, PermissionError, ...: without the path
        text = error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())  # one line


def image_problem(path: str) -> str | None:
    """Why the image file at ``path`` cannot be embedded, or ``None`` when it decodes fully.

    The whole image is decoded (a truncated JPEG opens fine and only fails there); truncated images are not accepted.
    """
    try:
        with Image.open(path) as image:
            image.load()
            image.convert("RGB")  # what embedding does with it
    except _read_errors() as error:
        return _reason(error)
    return None


def check_images(folder: str, *, accelerator: Any = None, progress: bool = False) -> ImageCheck:
    """``(good, bad)`` of the image files under ``folder`` (see :func:`list_images`), each fully decoded once.

    Under several processes (``accelerator``) only the main process decodes and the others receive its verdict, so
    every process holds the same lists. A missing folder or one without image files raises ``InvalidInputError``.
    """
    paths = list_images(folder)  # every process: cheap, and a missing folder fails everywhere alike
    num_processes = accelerator.num_processes if accelerator is not None else 1
    if accelerator is None or accelerator.is_main_process:
        full = [os.path.join(folder, path) for path in paths]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            problems = list(
                tqdm(pool.map(image_problem, full), total=len(full), desc="checking images", disable=not progress)
            )
    else:
        problems = []
    if num_processes > 1:
        problems = broadcast_object_list([problems])[0]
    good = [path for path, problem in zip(paths, problems) if problem is None]
    bad = [UnreadableImage(path, problem) for path, problem in zip(paths, problems) if problem is not None]
    return ImageCheck(good, bad)


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise InvalidConfigError(f"on_error must be one of {ON_ERROR_CHOICES}, not {on_error!r}.")


def _named(folder: str, bad: Sequence[UnreadableImage]) -> str:
    shown = "; ".join(f"{os.path.join(folder, item.path)} ({item.reason})" for item in bad[:_NAMED_IN_MESSAGES])
    more = len(bad) - _NAMED_IN_MESSAGES
    return shown + (f"; and {more} more" if more > 0 else "")


def require_readable(
    folder: str, check: ImageCheck, on_error: str = "stop", *, skip_hint: str = 'on_error="skip"'
) -> list[str]:
    """Raise ``InvalidInputError`` (one line, naming the files) when ``check`` has unreadable images and
    ``on_error`` is ``"stop"``, or when it has no readable image at all; return ``check.good`` otherwise."""
    _check_on_error(on_error)
    total = len(check.good) + len(check.bad)
    if not check.good:
        raise InvalidInputError(
            f"None of the {total} image file(s) under {folder!r} can be read: {_named(folder, check.bad)}."
        )
    if check.bad and on_error == "stop":
        first = check.bad[0]
        others = f" ({len(check.bad) - 1} more unreadable file(s) under {folder!r})" if len(check.bad) > 1 else ""
        raise InvalidInputError(
            f"Cannot read the image {os.path.join(folder, first.path)!r}: {first.reason}{others}. "
            f"Use {skip_hint} to embed the {len(check.good)} readable image(s) of {total} and skip the rest."
        )
    return check.good


def embed_folder(
    model: nn.Module,
    folder: str,
    transform: Any,
    *,
    on_error: str = "stop",
    checked: ImageCheck | None = None,
    batch_size: int = 256,
    accelerator: Any = None,
    progress=True,
) -> tuple[torch.Tensor, list[str]]:
    """``(embeddings, relative paths)`` of the images under ``folder``, with the eval ``transform``.

    Every file is checked first (:func:`check_images`). ``on_error="stop"`` (default): an unreadable file raises
    ``InvalidInputError`` naming it, before anything is embedded. ``on_error="skip"``: unreadable files are left out of
    both the embeddings and the paths (if none is readable, ``InvalidInputError``). To know which were skipped, call
    :func:`check_images` yourself and pass its result as ``checked`` (then the files are not decoded twice):
    ``checked.bad`` lists them.
    """
    check = checked if checked is not None else check_images(folder, accelerator=accelerator, progress=progress)
    paths = require_readable(folder, check, on_error)

    def load_batch(rows: list[int]) -> torch.Tensor:
        images = []
        for row in rows:
            path = os.path.join(folder, paths[row])
            try:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            except _read_errors() as error:  # readable when checked: the file changed since
                raise InvalidInputError(
                    f"Cannot read the image {path!r} (changed since it was checked?): {_reason(error)}."
                ) from error
        return transform({"image": images})["pixel_values"]

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


# ------------------------------------------------------------------------------------------------ the output file
def check_output_path(path: str) -> None:
    """Raise ``InvalidInputError`` (one line) unless a file can be written at ``path`` (its missing parent folders
    are created on writing)."""
    if not path:
        raise InvalidInputError("The output path is empty; give a file such as embeddings.safetensors.")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        example = os.path.join(path, "embeddings.safetensors")
        raise InvalidInputError(f"The output {path!r} is a folder; give a file path, such as {example!r}.")
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InvalidInputError(f"Cannot write the output {path!r}: {existing!r} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"Cannot write the output {path!r}: the folder {existing!r} is not writable.")
    if os.path.exists(path) and not _is_embeddings_file(path):
        raise ForeignContentError(
            f"The output {path!r} exists and is not an embeddings file of peft_puma; nothing was written: choose "
            "another path (docs/safety.md)."
        )


def _is_embeddings_file(path: str) -> bool:
    """A safetensors file with an ``embeddings`` tensor: what :func:`save_embeddings` writes, so it may be replaced."""
    try:
        with safe_open(path, framework="pt") as handle:
            return "embeddings" in handle.keys()
    except Exception:  # not a safetensors file at all: safetensors raises its own error types
        return False


def save_embeddings(path: str, embeddings: torch.Tensor, labels: Any = None, **rows: Sequence[Any]) -> None:
    """Write ``embeddings`` (and integer ``labels``) with safetensors; ``rows`` (JSON-serialisable lists) go to the
    metadata. The file is written to a temporary name beside ``path`` and renamed: it is complete or absent."""
    check_output_path(path)
    tensors = {"embeddings": embeddings.float().contiguous()}
    if labels is not None:
        tensors["labels"] = torch.as_tensor(list(labels), dtype=torch.int64)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    try:
        save_file(tensors, partial, metadata={name: json.dumps(list(values)) for name, values in rows.items()})
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def load_embeddings(path: str) -> dict[str, Any]:
    """``{"embeddings": tensor, "labels": tensor (if saved), <row field>: list, ...}`` of :func:`save_embeddings`."""
    with safe_open(path, framework="pt") as handle:
        result: dict[str, Any] = {key: handle.get_tensor(key) for key in handle.keys()}
        for name, text in (handle.metadata() or {}).items():
            result[name] = json.loads(text)
    return result


def load_split(path: str, split: str) -> Any:
    """The ``split`` of a dataset saved with ``save_to_disk`` (a plain ``Dataset`` is its own only split)."""
    if not os.path.isdir(path):
        raise InvalidInputError(f"The dataset folder {path!r} does not exist (give a folder saved with save_to_disk).")
    try:
        data = datasets.load_from_disk(path)
    except FileNotFoundError as error:  # a folder that is not a saved dataset
        raise InvalidInputError(f"{path!r} is not a dataset saved with save_to_disk ({error}).") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise InvalidInputError(f"{path} has splits {list(data)}, not {split!r}.")
        return data[split]
    return data


def report_skipped(folder: str, check: ImageCheck) -> None:
    total = len(check.good) + len(check.bad)
    lines = [f"warning: skipped {len(check.bad)} of {total} image file(s) under {folder!r} that cannot be read:"]
    lines += [f"  {os.path.join(folder, item.path)}: {item.reason}" for item in check.bad]
    print("\n".join(lines), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peft_puma.embed", description=__doc__.split("\n\n")[0])
    add_model_options(parser, "embed")
    add_image_source_options(parser)
    parser.add_argument("--output", required=True, help="embeddings file to write (.safetensors)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=None, help="default: the adapter's training resolution")
    parser.add_argument(
        "--on_error",
        choices=ON_ERROR_CHOICES,
        default=None,
        help="with --images, an unreadable image file: stop (default; exit 2 naming it, nothing written) or skip "
        "(embed the others, list the skipped files on stderr and in the output's 'skipped' metadata)",
    )
    args = parser.parse_args(argv)
    accelerator = None
    try:
        if args.dataset and args.on_error is not None:
            raise InvalidInputError("--on_error applies to --images only (a --dataset is decoded by datasets).")
        on_error = args.on_error or "stop"
        check_output_path(args.output)
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        check = None
        if args.images:  # before the model loads: a bad file stops the run at once, and every process agrees
            check = check_images(args.images, accelerator=accelerator, progress=accelerator.is_main_process)
            if check.bad and accelerator.is_main_process and (on_error == "skip" or not check.good):
                report_skipped(args.images, check)
            require_readable(args.images, check, on_error, skip_hint="--on_error skip")
        model, processor, image_size = load_for_inference(
            args.adapter, args.backbone, args.backbone_format, zero_shot=args.zero_shot
        )
        model.to(accelerator.device)
        transform = make_eval_transform(args.image_size or image_size, image_processor=processor)
        if check is not None:
            embeddings, paths = embed_folder(
                model,
                args.images,
                transform,
                on_error=on_error,
                checked=check,
                batch_size=args.batch_size,
                accelerator=accelerator,
            )
            rows: dict[str, Any] = {"paths": paths, "skipped": [item.as_dict() for item in check.bad]}
            labels = None
        else:
            dataset = load_split(args.dataset, args.split)
            embeddings = embed_dataset(model, dataset, transform, batch_size=args.batch_size, accelerator=accelerator)
            columns = set(dataset.column_names)
            labels = column_values(dataset, "label") if "label" in columns else None
            rows = {plural: column_values(dataset, name) for name, plural in _ROW_FIELDS.items() if name in columns}
        if accelerator.is_main_process:
            save_embeddings(args.output, embeddings, labels, **rows)
            skipped = f" ({len(check.bad)} unreadable image(s) skipped, listed above)" if check and check.bad else ""
            print(f"{embeddings.shape[0]} embeddings of size {embeddings.shape[1]} written to {args.output}{skipped}")
        accelerator.wait_for_everyone()
    except PUMAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if accelerator is not None:
            accelerator.end_training()  # under several processes: leave the process group before exiting
    return 0


if __name__ == "__main__":
    sys.exit(main())
