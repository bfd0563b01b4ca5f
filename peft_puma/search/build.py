"""``python -m peft_puma.search index``: embed a gallery and write its index folder (docs/search.md, "Building an
index").

The gallery is embedded as ``python -m peft_puma.embed`` embeds it (same model loading, eval transform, image checks,
``--on_error``, batching and progress bar; under ``accelerate launch`` each process embeds a share and the shares are
gathered); the main process then builds the faiss index and writes the folder. The output folder is checked first, in
every process, so a folder that may not be written stops the command before any image is read.
"""

from __future__ import annotations

from typing import Any

import torch

from ..backbones.loading import check_resolution
from ..data.images import check_folder, report_skipped, require_readable
from ..data.saved import load_split
from ..data.transforms import MIN_IMAGE_SIZE, make_eval_transform
from ..errors import InvalidConfigError
from ..inference.embedding import embed_dataset, embed_folder
from ..inference.options import require_at_least
from ..inference.run_choices import followed_on_error
from ..runs.lock import lock_across_processes
from ..runs.split_file import read_run_split, run_split_path
from .embedding import load_model, preprocessing_record
from .folder import check_index_output, index_lock_path, make_manifest, save_index_folder
from .identity import model_identity
from .index import build_index, index_params
from .rows import dataset_rows, folder_rows

_LARGE = 1 << 40  # a stand-in gallery size to validate index options before the gallery is known


def index_options(args: Any) -> dict[str, int | None]:
    """The index options given on the command line, checked against the index type before any work."""
    options = {name: getattr(args, name) for name in ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe")}
    index_params(args.index, _LARGE, **options)
    return options


def run_index(args: Any) -> None:
    """Build the index folder ``args.output_dir`` from ``args.images`` or ``args.dataset`` (see :mod:`.cli`)."""
    from accelerate import Accelerator

    if args.adapter is None and not args.zero_shot:
        raise InvalidConfigError("Give --adapter RUN (a training output_dir), or --zero_shot --backbone BACKBONE.")
    require_at_least("--batch_size", args.batch_size, 1)
    require_at_least("--image_size", args.image_size, MIN_IMAGE_SIZE)
    options = index_options(args)
    check_index_output(args.output_dir)
    identity = model_identity(args.adapter, args.backbone, args.backbone_format, zero_shot=args.zero_shot)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    lock = None
    try:
        # One build per index folder, held until it is written; refused before any image is embedded.
        lock = lock_across_processes(
            index_lock_path(args.output_dir),
            "another index build",
            accelerator,
            remove_on_release=True,
            folder=args.output_dir,
        )
        check = None
        on_error = followed_on_error(args.on_error, args.adapter, args.images or args.dataset)
        if args.images:  # before the model loads: a bad file stops the run at once, and every process agrees
            check = check_folder(args.images, accelerator=accelerator, progress=accelerator.is_main_process)
            if check.bad and accelerator.is_main_process and (on_error == "skip" or not check.good):
                report_skipped(args.images, check)
            require_readable(args.images, check, on_error, skip_hint="--on_error skip")
        else:
            dataset = load_split(args.dataset, args.split, read_run_split(args.adapter), on_error)
        model, processor, image_size = load_model(identity, identity["adapter"], args.allow_other_backbone)
        model.to(accelerator.device)
        transform = make_eval_transform(args.image_size or image_size, image_processor=processor)
        check_resolution(model, transform.image_size)
        embed_options = {"batch_size": args.batch_size, "accelerator": accelerator}
        if check is not None:
            embeddings, paths = embed_folder(
                model, args.images, transform, checked=check, on_error=on_error, **embed_options
            )
            rows = folder_rows(args.images, paths, [item.as_dict() for item in check.bad])
        else:
            embeddings = embed_dataset(model, dataset, transform, **embed_options)
            rows = dataset_rows(args.dataset, args.split, dataset, run_split_path(args.adapter), on_error)
        if accelerator.is_main_process:
            index = build_index(embeddings, args.index, seed=args.seed, **options)
            manifest = make_manifest(index, identity, preprocessing_record(transform), rows)
            save_index_folder(args.output_dir, index, manifest)
            skipped = f", {len(check.bad)} unreadable image(s) skipped (listed above)" if check and check.bad else ""
            print(
                f"{index.num_vectors} images indexed ({args.index}, {index.dimension} dimensions) in "
                f"{args.output_dir}{skipped}"
            )
        accelerator.wait_for_everyone()
    finally:
        if lock is not None:
            lock.release()
        accelerator.end_training()  # under several processes: leave the process group before exiting
