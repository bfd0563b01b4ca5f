"""The command line of the two data-making commands (``python -m peft_puma.data.uml_mini``, ``python -m
peft_puma.standin``): options spelled as the trainer's keys, old spellings kept but hidden, and every mistake one line.

- One spelling per option in ``--help`` (``--output_dir``, with a metavar and a help text); the hyphenated spelling
  (``--output-dir``) and former names (``--out``) still work, unlisted, so old scripts and CI keep running.
- A mistake on the command line (an unknown option, a missing or malformed value) is a
  :class:`~peft_puma.errors.InvalidConfigError`: inside the commands' error boundary it is one ``error: ...`` line and
  exit status 2, like every other mistake, instead of argparse's usage block. An unknown option names the closest
  known one; prefixes are not guessed (``allow_abbrev=False``, as ``train``), so a typo is reported, not silently
  read as some other option.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidConfigError
from .sources import FASHION_MNIST_DIR_VARIABLE, FONTS_DIR_VARIABLE, SourceFolders


class OneSpellingFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` lists an option by its first spelling only; the others are accepted but not advertised (argparse's
    usage line already shows only the first)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if getattr(action, "one_spelling", False):
            action = copy.copy(action)
            action.option_strings = action.option_strings[:1]
        return super()._format_action_invocation(action)


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose options have hidden extra spellings and whose errors are raised as
    :class:`InvalidConfigError` (one line; an unknown option names the closest known one)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", OneSpellingFormatter)
        super().__init__(**kwargs)

    def add_option(self, flag: str, *aliases: str, **kwargs: Any) -> argparse.Action:
        """``--flag`` as ``--help`` shows it; ``aliases`` (former names) and ``flag`` with hyphens are accepted too."""
        hyphenated = [flag.replace("_", "-")] if "_" in flag else []
        action = self.add_argument(flag, *aliases, *hyphenated, **kwargs)
        action.one_spelling = True  # type: ignore[attr-defined]
        return action

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """argparse's parsing, after a look for unknown options: those are named first, since a mistyped option is
        the likely reason for what argparse would report first (a required option missing, a stray value)."""
        tokens = list(sys.argv[1:] if args is None else args)
        known = {spelling for action in self._actions for spelling in action.option_strings}
        for token in tokens[: tokens.index("--") if "--" in tokens else len(tokens)]:
            if token.startswith("-") and token.partition("=")[0] not in known and not _is_number(token):
                self.error(self._unknown([token]))
        parsed, extras = self.parse_known_args(tokens, namespace)
        if extras:
            self.error(self._unknown(extras))
        return parsed

    def error(self, message: str):  # type: ignore[override]
        """argparse's errors, raised instead of printed under the usage: the error boundary prints one line. An option
        is named by its first spelling (argparse would join them all: ``--output_dir/--out/--output-dir``)."""
        for action in self._actions:
            if getattr(action, "one_spelling", False):
                message = message.replace("/".join(action.option_strings), action.option_strings[0])
        raise InvalidConfigError(f"{message} (`{self.prog} --help` lists the options)")

    def _unknown(self, extras: list[str]) -> str:
        """What is wrong with the tokens argparse did not take: an unknown option (and the closest known one), or a
        stray value."""
        option = next((token for token in extras if token.startswith("-")), None)
        if option is None:
            return f"unexpected argument {extras[0]!r}: every value follows its option"
        name = option.partition("=")[0]
        spellings = {
            spelling.lstrip("-").replace("-", "_"): action.option_strings[0]
            for action in self._actions
            for spelling in action.option_strings
        }
        close = difflib.get_close_matches(name.lstrip("-").replace("-", "_"), list(spellings), n=1, cutoff=0.6)
        if close:
            return f"unknown option {name}; did you mean {spellings[close[0]]}?"
        shown = [action.option_strings[0] for action in self._actions if getattr(action, "one_spelling", False)]
        return f"unknown option {name}; the options are {', '.join(shown)}"


def _is_number(token: str) -> bool:
    """A negative number is a value (``--seed -1``), not an option."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def add_source_options(parser: CommandParser) -> None:
    """``--fonts_dir DIR`` and ``--fashion_mnist_dir DIR``: build from a user's own copies instead of the Debian
    packages (no root needed); their defaults are the environment variables, which ``train`` reads too."""
    parser.add_option(
        "--fonts_dir",
        metavar="DIR",
        help=f"read the fonts from DIR instead of the Debian packages: a folder searched (with its subfolders) for the "
        f"font files by name, e.g. a copy of /usr/share/fonts; no root needed (default: ${FONTS_DIR_VARIABLE})",
    )
    parser.add_option(
        "--fashion_mnist_dir",
        metavar="DIR",
        help="read Fashion-MNIST from DIR instead of the Debian package: a folder holding the gz files of its GitHub "
        f"release (train-images-idx3-ubyte.gz, ...) (default: ${FASHION_MNIST_DIR_VARIABLE})",
    )


def source_folders(args: argparse.Namespace) -> SourceFolders:
    """The sources the options (else the environment variables, else the Debian packages) name."""
    return SourceFolders.from_environment(args.fonts_dir, args.fashion_mnist_dir)
