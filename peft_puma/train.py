"""``python -m peft_puma.train`` / ``accelerate launch -m peft_puma.train``: train PUMA or a baseline.

    python -m peft_puma.train --config configs/uml_mini.yaml --output_dir runs/uml_mini
    accelerate launch --multi_gpu --num_processes 4 -m peft_puma.train --config configs/puma_uml8_vits16.yaml
    python -m peft_puma.train --config configs/uml_mini.yaml --output_dir runs/uml_mini --resume

Every key of the config (docs/training.md; ``--help`` lists them with their defaults) can be given as ``--key value``,
replacing the file's value (``--puma.keep_prob 1.0`` for one entry of a mapping key). Exit status: 0 done, 2 invalid
configuration or data, 3 the loss became NaN/inf (the last good checkpoint is kept).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .command_line import EXIT_INVALID, run_command
from .config.parsing import ConfigArgumentParser
from .training import NonFiniteLossError, train
from .training.arguments import TrainingConfig, load_config

EXIT_INVALID = EXIT_INVALID  # re-exported: what a mistake in the config or data exits with
EXIT_NON_FINITE = NonFiniteLossError.exit_status


def build_parser():
    """The command line: ``--config FILE`` and one option per config key (HfArgumentParser, :mod:`.config.parsing`);
    ``--help`` lists every key with its help and default."""
    parser = ConfigArgumentParser(
        TrainingConfig,
        prog="python -m peft_puma.train",
        usage="%(prog)s [--config FILE] [--KEY VALUE ...] [--MAPPING.KEY VALUE ...]",
        description="Train PUMA (or a baseline) with the published recipe (docs/training.md).",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of config keys (configs/*.yaml); the keys given on the command line replace its values",
    )
    return parser


EPILOG = """values are read as YAML: --max_steps null, --progress_bar false, --report_to "[]"; a list key takes its
items one by one or as a YAML list (--eval_ks 1 4, --eval_ks "[1, 4]"); a key without a value is true (--resume).
One entry of a mapping key: --puma.keep_prob 1.0, --lr_multipliers.head 1, --dataset_roots.cub /data/CUB_200_2011.
transformers' TrainingArguments names are accepted where they mean the same thing (--num_train_epochs,
--per_device_train_batch_size, --bf16, --logging_steps, ...; docs/training.md has the table).
exit status: 0 done, 2 invalid configuration or data, 3 the loss became NaN/inf (the last good checkpoint is kept)."""


def parse_args(argv: Sequence[str] | None = None, *, validate: bool = True) -> TrainingConfig:
    """The config (file + command-line keys), validated unless ``validate`` is false."""
    overrides, args = build_parser().parse_config_args(argv)
    return load_config(args.config, overrides, validate=validate)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # train() validates the config, once, before it loads anything.
    return run_command(lambda: train(parse_args(argv, validate=False)) and None)


if __name__ == "__main__":
    sys.exit(main())
