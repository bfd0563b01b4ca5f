"""Command-line options of the benchmark scripts, spelled with underscores like the trainer's keys (``--image_size``);
the hyphenated spelling (``--image-size``) is accepted too and left out of ``--help``."""

from __future__ import annotations

import argparse
from typing import Any


def add_option(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """``parser.add_argument(flag, **kwargs)``, plus a hidden alias with hyphens when ``flag`` has underscores."""
    parser.add_argument(flag, **kwargs)
    if "_" in flag:
        hidden = {**kwargs, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
        hidden.pop("required", None)
        parser.add_argument(flag.replace("_", "-"), **hidden)
