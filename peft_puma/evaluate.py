"""``python -m peft_puma.evaluate``: a trained adapter + the test (or validation) split -> the paper's results table.

    python -m peft_puma.evaluate --adapter runs/uml_mini --uml_mini_dir data/uml_mini
    python -m peft_puma.evaluate --adapter runs/uml_mini --uml_mini_dir data/uml_mini --split validation
    python -m peft_puma.evaluate --zero_shot --backbone assets/uml_mini_vit --uml_mini_dir data/uml_mini
    python -m peft_puma.evaluate --adapter runs/paper --dataset_roots.cub /data/CUB_200_2011 --dataset_roots.cars ...
    python -m peft_puma.evaluate --adapter runs/mine --dataset_path my_collections/

Data keys are those of training (``--dataset_path``, ``--uml_mini_dir``, ``--dataset_roots``, ``--datasets``,
``--image_size``, and a collection's columns and split keys); ``--dataset_path`` may be a folder of images, scored
on the classes the adapter's run held out, or data of test classes alone (docs/collections.md). ``--split
validation`` scores the validation split instead of the test split (a UML-mini build has one; the paper's benchmarks
do not, and asking for it there is a one-line error). Prints Recall@1 per dataset, Unified and Harmonic (docs/spec.md
section 7) under a title naming the split, and writes the full mapping of
:func:`peft_puma.evaluation.evaluate_retrieval` with ``--output`` (plus ``split``, ``data_source``,
``backbone_fingerprint`` and ``commit``). From Python: :func:`evaluate_adapter`.

This module is the command (the name it is run by); the metrics are computed by the package :mod:`peft_puma.evaluation`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

from .backbones.fingerprint import fingerprint_of
from .backbones.loading import check_resolution
from .command_line import run_command
from .config.cli import add_option
from .config.parsing import ConfigArgumentParser, load_keys
from .data.config import DataConfig
from .data.schema import TEST_SPLIT
from .data.transforms import make_eval_transform
from .data.unified import SCORED_SPLITS, SCORING, load_source, scored_split
from .errors import InvalidConfigError
from .evaluation.examples import write_retrieval_examples
from .evaluation.grid import check_grid_output
from .evaluation.retrieval import KTooLargeError
from .evaluation.scoring import check_split, score_split
from .evaluation.table import results_markdown
from .evaluation.test_reads import check_test_reads, is_recorded, record_test_read
from .inference.embedding import embed_split
from .inference.loading import load_for_inference
from .inference.options import add_model_options, require_at_least
from .inference.run_choices import followed_on_error
from .owned_paths import check_json_output, write_json_atomically
from .runs.results_file import results_record
from .runs.run_file import RunRecord, read_run_file
from .runs.split_file import read_run_split

DEFAULT_EVAL_KS = (1, 2, 4, 8)


def evaluate_adapter(
    adapter: str | None,
    data: Any,
    *,
    backbone: str | None = None,
    backbone_format: str | None = None,
    zero_shot: bool = False,
    allow_other_backbone: bool = False,
    ks: Sequence[int] = DEFAULT_EVAL_KS,
    batch_size: int = 256,
    image_size: int | None = None,
    accelerator: Any = None,
    progress: bool = True,
    examples: str | None = None,
    split: str = TEST_SPLIT,
) -> dict[str, Any]:
    """The retrieval results of an adapter (or of the zero-shot backbone) on the test split, or on ``split``.

    ``data``: a :class:`peft_puma.data.config.DataConfig`, a mapping of its keys, or the ``datasets.Dataset`` to score
    itself (row schema of docs/data.md; ``split`` is then unused). Only the scored split is needed: data of test
    classes alone (a new collection) is scored as it is. A collection without splits is split as the adapter's run
    split it (its split record, docs/collections.md; classes the record does not know are test classes), or, without
    a record, by the data keys' split rule. ``split``: ``"test"`` or ``"validation"``; a source without it is an
    :class:`~peft_puma.errors.InvalidConfigError` naming the splits it has. Returns the mapping of
    :func:`peft_puma.evaluation.evaluate_retrieval`. ``examples``: also write the retrieval examples sheet there
    (:mod:`peft_puma.evaluation.examples`).
    """
    if isinstance(data, dict):
        data = load_keys(None, data, DataConfig).validate()
    if isinstance(data, DataConfig):
        data.validate_data()
        check_test_reads([split], warn=accelerator is None or accelerator.is_main_process)
        loaded = load_source(data, purpose=SCORING, record=read_run_split(adapter))
        scored = scored_split(loaded.data, split, "--split")
        image_size = image_size or data.image_size
    else:
        scored = data
    check_split(scored, ks)  # a k larger than a dataset's gallery: refused before the model loads
    model, processor, trained_size = load_for_inference(
        adapter, backbone, backbone_format, zero_shot=zero_shot, allow_other_backbone=allow_other_backbone
    )
    if accelerator is not None:
        model.to(accelerator.device)
    transform = make_eval_transform(image_size or trained_size, image_processor=processor)
    check_resolution(model, transform.image_size)
    embeddings = embed_split(
        model, scored, transform, batch_size=batch_size, accelerator=accelerator, progress=progress
    )
    if examples and (accelerator is None or accelerator.is_main_process):
        write_retrieval_examples(examples, {"zero-shot" if zero_shot else "trained": embeddings}, scored)
    result = score_split(embeddings, scored, ks)
    if isinstance(data, DataConfig) and is_recorded(split) and (accelerator is None or accelerator.is_main_process):
        weights = scored_weights(adapter, zero_shot, backbone, allow_other_backbone)
        _record_read(split, zero_shot, adapter, weights, result, loaded.description)
    return result


@dataclass(frozen=True)
class ScoredWeights:
    """What a scoring read: the adapter's run file (None zero-shot, for a Hub adapter or a folder without one), the
    backbone and its fingerprint (None where unknown), for the ledger line and ``--output`` alike."""

    run: RunRecord | None
    backbone: str | None
    fingerprint: str | None

    @property
    def training_seed(self) -> int | None:
        return self.run.config.get("seed") if self.run else None


def scored_weights(
    adapter: str | None, zero_shot: bool, backbone: str | None, allow_other_backbone: bool = False
) -> ScoredWeights:
    """The weights a scoring read, from one read of the run file and at most one hash of the backbone (a large
    backbone's hash is seconds of I/O, not to be paid twice for the ledger and ``--output``).

    A trained adapter's run file names its backbone's fingerprint, which the loader has checked; the zero-shot row,
    or an adapter put on another backbone on purpose (``allow_other_backbone``), read the weights of ``backbone``,
    so those are fingerprinted.
    """
    run = _run_of(adapter)
    if run and not zero_shot and not (allow_other_backbone and backbone):
        return ScoredWeights(run, backbone or run.backbone, run.backbone_fingerprint)
    backbone = backbone or (run.backbone if run else None)
    return ScoredWeights(None if zero_shot else run, backbone, fingerprint_of(backbone) if backbone else None)


def _record_read(
    split: str, zero_shot: bool, adapter: str | None, weights: ScoredWeights, result: dict, data_source: Any
) -> None:
    """This scoring's line in the test-read ledger (peft_puma/evaluation/test_reads.py); call it when it reads test."""
    record_test_read(
        split,
        "evaluate, the zero-shot backbone" if zero_shot else "evaluate, a trained adapter",
        result,
        data_source=data_source,
        config=weights.run.config if weights.run else None,
        backbone=weights.backbone,
        backbone_fingerprint=weights.fingerprint,
        adapter=None if zero_shot or not adapter else os.path.abspath(adapter),
    )


def _run_of(adapter: str | None):
    """The run file of a trained adapter's folder; None for a Hub adapter or a folder without one."""
    return read_run_file(adapter) if adapter and os.path.isdir(adapter) else None


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(lambda: _evaluate(build_parser(), argv))


def build_parser() -> ConfigArgumentParser:
    """The data keys of training (``--dataset_path``, ``--uml_mini_dir``, ...), the model options and this command's
    own; ``--ks`` is the old spelling of ``--eval_ks`` (training's key), still accepted."""
    parser = ConfigArgumentParser(
        DataConfig,
        prog="python -m peft_puma.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="Data: --dataset_path DIR | --uml_mini_dir DIR | --dataset_roots.NAME PATH ...; --datasets a b.",
    )
    add_model_options(parser, "evaluate")
    own = parser.add_argument_group("evaluation options")
    add_option(
        own,
        "--eval_ks",
        hidden=["--ks"],
        type=int,
        nargs="+",
        default=None,
        metavar="INT",
        help="k of Recall@k, as training's eval_ks; each must fit the smallest gallery a query searches (itself "
        "excluded), checked before the model loads (default: the eval_ks of the adapter's run, else 1 2 4 8)",
    )
    own.add_argument(
        "--batch_size",
        type=int,
        default=256,
        metavar="INT",
        help="images per forward pass in each process, as training's eval_batch_size (default: 256)",
    )
    own.add_argument(
        "--split",
        choices=SCORED_SPLITS,
        default=TEST_SPLIT,
        help="split to score: test (default, the published protocol) or validation (where the data has one)",
    )
    own.add_argument(
        "--output",
        metavar="FILE",
        help="also write the results mapping (with split and data_source) to this JSON file: new, or one this command "
        "wrote",
    )
    own.add_argument(
        "--examples",
        metavar="FILE",
        help="write a PNG of retrieval examples here: seeded queries per dataset of the scored split and their top 5",
    )
    return parser


def _evaluate(parser: ConfigArgumentParser, argv: Sequence[str] | None) -> None:
    data_overrides, args = parser.parse_config_args(argv)  # unknown keys: one-line error, exit 2
    require_at_least("--batch_size", args.batch_size, 1)
    for k in args.eval_ks or ():
        require_at_least("--eval_ks", k, 1)
    ks, ks_name = _eval_ks(args)
    if args.output:
        check_json_output(args.output, "unified", "a results file")
    if args.examples:
        check_grid_output(args.examples)
    check_test_reads([args.split])  # a ledger that cannot take the read: refused before any work
    data = load_keys(None, data_overrides, DataConfig).validate()
    if "on_error" not in data_overrides:  # not given: the run's own choice on the same data (said on stderr)
        data.on_error = followed_on_error(None, args.adapter, data.dataset_path)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    loaded = load_source(data, purpose=SCORING, record=read_run_split(args.adapter))
    scored = scored_split(loaded.data, args.split, "--split")
    try:  # before the model loads: a k larger than the smallest gallery, named with the ks that fit
        check_split(scored, ks)
    except KTooLargeError as error:
        described = error.describe("--eval_ks", ks, args.split)
        raise InvalidConfigError(f"{ks_name} {' '.join(map(str, ks))}: {described}") from None
    result = evaluate_adapter(
        args.adapter,
        scored,
        image_size=data.image_size,
        backbone=args.backbone,
        backbone_format=args.backbone_format,
        zero_shot=args.zero_shot,
        allow_other_backbone=args.allow_other_backbone,
        ks=ks,
        batch_size=args.batch_size,
        accelerator=accelerator,
        examples=args.examples,
        split=args.split,
    )
    if accelerator.is_main_process:
        recorded = is_recorded(args.split)
        if recorded or args.output:
            weights = scored_weights(args.adapter, args.zero_shot, args.backbone, args.allow_other_backbone)
        what = "zero-shot backbone" if args.zero_shot else args.adapter
        print(results_markdown(result, f"Evaluation of {what} ({args.split} split)"))
        if args.output:
            record = results_record(result, args.split, loaded.description, weights.fingerprint, weights.training_seed)
            write_json_atomically(args.output, record)
            print(f"results written to {args.output}")
        if args.examples:
            print(f"retrieval examples written to {args.examples}")
        if recorded:  # last: a ledger that fails now leaves the results printed and written
            _record_read(args.split, args.zero_shot, args.adapter, weights, result, loaded.description)


def _eval_ks(args: Any) -> tuple[list[int], str]:
    """The ks to score and their name for messages: ``--eval_ks`` when given, else the adapter's run's ``eval_ks``
    (the ks it was trained to report, which fit its data), else 1 2 4 8."""
    if args.eval_ks:
        return list(args.eval_ks), "--eval_ks"
    run = _run_of(args.adapter)
    saved = run.config.get("eval_ks") if run else None
    if saved:
        return [int(k) for k in saved], f"the eval_ks of the run {args.adapter} (give --eval_ks to choose others)"
    return list(DEFAULT_EVAL_KS), "--eval_ks"


if __name__ == "__main__":
    sys.exit(main())
