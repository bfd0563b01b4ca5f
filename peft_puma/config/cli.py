"""What every command's command line shares (``train``, ``evaluate``, ``embed``, ``search``, the timm converter):
:class:`CommandParser`, an ``argparse.ArgumentParser`` whose mistakes are one line and whose ``--help`` reads alike.

- A mistake (an unknown option, a missing or invalid value) raises :class:`~peft_puma.errors.InvalidConfigError`, so
  the error boundary (:mod:`peft_puma.command_line`) prints one ``error: ...`` line and exits with status 2, instead of
  argparse's usage block. An unknown option gets a did-you-mean over the options the command knows
  (``--outptu``: did you mean ``--output``?).
- Old spellings keep working as hidden aliases (:func:`add_option` with ``hidden=``): accepted, not shown in
  ``--help`` (``search index --output`` is ``--output_dir`` now).
- Options are matched whole, never by prefix (``allow_abbrev=False``): ``--epoch`` is a mistake to point out, not
  ``--epochs``.
- ``--help`` shows values plainly: ``--eval_ks INT ...``, not argparse's ``INT [INT ...]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from ..errors import InvalidConfigError
from .keys import unknown_names_error

HIDDEN = "hidden_option_strings"  # the attribute of an action listing its hidden spellings


def add_option(container: Any, *names: str, hidden: Sequence[str] = (), **kwargs: Any) -> argparse.Action:
    """``container.add_argument(*names, *hidden, **kwargs)``, with the ``hidden`` spellings accepted but left out of
    ``--help`` and of error messages (an option's old name, kept so existing scripts work)."""
    action = container.add_argument(*names, *hidden, **kwargs)
    setattr(action, HIDDEN, frozenset(hidden))
    return action


def visible_option_strings(action: argparse.Action) -> list[str]:
    """The spellings of an option that ``--help`` shows."""
    hidden = getattr(action, HIDDEN, frozenset())
    return [name for name in action.option_strings if name not in hidden]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter (descriptions and epilogs kept as written) that shows an option by its visible
    spellings only, and a list value as ``INT ...``."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or not getattr(action, HIDDEN, None):
            return super()._format_action_invocation(action)
        shown = argparse.Action(visible_option_strings(action), action.dest, nargs=action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(shown)

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if action.nargs in (argparse.ONE_OR_MORE, argparse.ZERO_OR_MORE):
            (metavar,) = self._metavar_formatter(action, default_metavar)(1)
            return f"{metavar} ..."
        return super()._format_args(action, default_metavar)


class CommandParser(argparse.ArgumentParser):
    """The parser of a command (see the module docstring); sub-command parsers are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # --epoch is an unknown option, not --epochs
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """The options, or one :class:`InvalidConfigError` naming an unknown one with a did-you-mean (first: a
        mistyped required option is reported as the typo, not as a missing option)."""
        args = list(sys.argv[1:] if args is None else args)
        try:
            parsed, rest = self.parse_known_args(args, namespace)
        except InvalidConfigError:
            unknown = [token for token in args if self._is_unknown_option(token)]
            if unknown:
                self.refuse_unknown(unknown, argparse.Namespace(), self._sub_command_option_names(args))
            raise
        if rest:
            self.refuse_unknown(rest, parsed)
        return parsed

    def _is_unknown_option(self, token: str) -> bool:
        name = token.partition("=")[0]
        return token.startswith("--") and name not in self.option_names() + self._sub_command_option_names()

    def _sub_command_option_names(self, args: Sequence[str] | None = None) -> list[str]:
        """The options of the sub-command ``args`` name (of every sub-command, when ``args`` is not given)."""
        names = []
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, parser in action.choices.items():
                    if isinstance(parser, CommandParser) and (args is None or name in args):
                        names += parser.option_names()
        return names

    def refuse_unknown(self, rest: Sequence[str], parsed: Any = None, extra: Iterable[str] = ()) -> NoReturn:
        """Raise the error for tokens argparse did not take: unknown options (with a did-you-mean over this parser's
        options, the chosen sub-command's and ``extra``), or a stray value."""
        chosen = self._chosen_sub_command(parsed)
        if chosen is not None:
            chosen.refuse_unknown(rest, None, [*extra, *self.option_names()])
        options = [token.partition("=")[0] for token in rest if token.startswith("--")]
        if not options:
            raise InvalidConfigError(f"Expected an --option on the command line, got {rest[0]!r}.")
        raise unknown_names_error(
            options,
            [*self.option_names(), *extra],
            what="option",
            listing=f"`{self.prog} --help` lists the options.",
        )

    def option_names(self) -> list[str]:
        """Every ``--option`` this parser takes, hidden spellings too."""
        return [name for action in self._actions for name in action.option_strings if name.startswith("--")]

    def _chosen_sub_command(self, parsed: Any) -> CommandParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, CommandParser):
                    return chosen
        return None

    def error(self, message: str) -> NoReturn:
        """argparse's mistakes (a missing or invalid value, a required option) as one line, naming each option by
        its visible spellings."""
        for action in self._actions:
            if getattr(action, HIDDEN, None):
                message = message.replace("/".join(action.option_strings), "/".join(visible_option_strings(action)))
        raise InvalidConfigError(f"{message} (`{self.prog} --help` lists the options).")
