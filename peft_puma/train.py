"""``python -m peft_puma.train`` / ``accelerate launch -m peft_puma.train``: train PUMA or a baseline.

    python -m peft_puma.train --config configs/uml_mini.yaml --output_dir runs/uml_mini
    accelerate launch --multi_gpu --num_processes 4 -m peft_puma.train --config configs/puma_uml8_vits16.yaml
    python -m peft_puma.train --config configs/uml_mini.yaml --output_dir runs/uml_mini --resume

Every key of the config (docs/training.md) can be overridden as ``--key value`` (``--puma.keep_prob 1.0`` for a key of
a mapping). Exit status: 0 done, 2 invalid configuration or data, 3 the loss became NaN/inf (the last good checkpoint
is kept).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import PUMAError

EXIT_INVALID = 2
EXIT_NON_FINITE = 3


def parse_args(argv: Sequence[str] | None = None):
    """The config (file + overrides), validated."""
    from .training.parsing import load_config

    parser = argparse.ArgumentParser(
        prog="python -m peft_puma.train",
        description="Train PUMA (or a baseline) with the published recipe (docs/training.md).",
        epilog=keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of config keys (configs/*.yaml)")
    args, overrides = parser.parse_known_args(argv)
    return load_config(args.config, overrides)


def keys_help() -> str:
    """Every config key with its default and meaning, for ``--help``."""
    import dataclasses

    from .training.config import TrainingConfig

    lines = ["config keys (YAML file, or --key VALUE / --mapping.key VALUE on the command line):"]
    for field in dataclasses.fields(TrainingConfig):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        lines.append(f"  --{field.name} (default {default!r})")
        lines.append(f"      {field.metadata.get('help', '')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .training import NonFiniteLossError, train

    try:
        config = parse_args(argv)
        train(config)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NON_FINITE
    except PUMAError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return 0


if __name__ == "__main__":
    sys.exit(main())
