"""Reading a config: a YAML (or JSON) file of keys, then command-line overrides (docs/training.md, "Config keys").

:class:`ConfigArgumentParser` is transformers' ``HfArgumentParser`` over a config dataclass (``DataConfig``, or
``TrainingConfig`` which extends it) with the conventions of every command (:class:`.cli.CommandParser`):
one option per key, named as the key (``--output_dir``; ``--output-dir`` is accepted too), whose ``--help`` line is the
field's help and default. Values are read as YAML (``3``, ``1e-4``, ``null``, ``false``, ``[1, 2]``, ``{r: 8}``); a list
key also takes its items one by one (``--eval_ks 1 4`` is ``--eval_ks "[1, 4]"``), a key without a value is ``true``
(``--resume``), and ``--mapping.key VALUE`` sets one entry of a mapping key (``--puma.keep_prob 1.0``; a mapping whose
entries are declared, as ``puma``'s, lists each of them in ``--help``). A key's aliases (transformers'
``TrainingArguments`` names: ``--num_train_epochs``) are accepted in files and on the command line alike, names that
mean something else here are refused with the key to use, and an unknown name gets a did-you-mean
(:func:`~peft_puma.config.keys.resolve_names`). :func:`load_keys` starts from the file's keys and lets the given keys
replace them; the dataclasses check types and values themselves (:mod:`.keys`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import yaml
from transformers.hf_argparser import HfArgumentParser

from ..errors import InvalidConfigError
from .cli import CommandParser, HelpFormatter
from .keys import (
    coerce,
    is_list_type,
    is_mapping_type,
    key_aliases,
    key_default,
    key_types,
    known_names,
    metavar_of,
    refused_names,
    resolve_names,
    unknown_names_error,
)


def load_keys(
    path: str | os.PathLike | None,
    overrides: Mapping[str, Any] | Sequence[str] | None,
    cls: type,
) -> Any:
    """A ``cls`` config (not validated yet) from a YAML file (optional) updated by overrides.

    ``overrides`` is a mapping of keys (a dotted key sets one entry of a mapping key: ``{"puma.keep_prob": 1.0}``) or
    a list of command-line tokens (``["--epochs", "3", "--puma.keep_prob=1.0"]``); they replace the file's values.
    Aliases are accepted in both and in the file (:func:`~peft_puma.config.keys.resolve_names`).
    """
    values = _read_config_file(path, cls) if path is not None else {}
    if overrides is not None:
        given = parse_cli_overrides(overrides, cls) if _is_token_list(overrides) else resolve_names(overrides, cls)
        for key, value in given.items():
            _set_key(values, key, value, cls)
    return build_config(values, cls)


def build_config(values: Mapping[str, Any], cls: type) -> Any:
    """A config (not validated yet) from a mapping of its keys (aliases accepted); an unknown key is an error with a
    did-you-mean and the accepted keys."""
    values = resolve_names(values, cls)
    (config,) = ConfigArgumentParser(cls, add_help=False).parse_dict(dict(values))
    return config


def parse_cli_overrides(tokens: Sequence[str], cls: type) -> dict[str, Any]:
    """``["--epochs", "3", "--resume", "--puma.r=8"]`` -> ``{"epochs": 3, "resume": True, "puma.r": 8}``."""
    given, _ = ConfigArgumentParser(cls, add_help=False).parse_config_args(tokens)
    return given


def yaml_value(text: str) -> Any:
    """A command-line value read as a YAML scalar or flow collection; text that is not YAML stays text."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


class ConfigArgumentParser(HfArgumentParser, CommandParser):
    """``HfArgumentParser`` over the dataclasses of a config class, whose options take YAML values.

    A command adds its own options with ``add_argument``; :meth:`parse_config_args` returns the config keys given
    (for :func:`load_config`) and the namespace of the other options.
    """

    def __init__(self, cls: type, **kwargs: Any) -> None:
        self.config_class = cls
        kwargs.setdefault("formatter_class", HelpFormatter)  # HfArgumentParser would choose its own
        super().__init__(cls, **kwargs)  # CommandParser's formatter and allow_abbrev=False: --epoch is no --epochs
        self._list_mapping_entries(cls)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        """HfArgumentParser's hook for one field (``field.type`` is resolved by then): its ``--help`` line. The values
        themselves are read by :meth:`_take_config_tokens` (YAML, lists item by item, aliases, dotted entries)."""
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        text = field.metadata.get("help", "")
        if is_mapping_type(field.type):
            text += f" One entry: --{field.name}.KEY VALUE."
        parser.add_argument(
            f"--{field.name}",
            dest=field.name,
            default=argparse.SUPPRESS,
            metavar=field.metadata.get("metavar") or metavar_of(field.type),
            help=f"{text} (default: {_flow(default)})".replace("%", "%%"),
        )

    def _list_mapping_entries(self, cls: type) -> None:
        """One ``--help`` section per mapping key with declared entries (``--puma.keep_prob FLOAT``), typed and
        explained by the entry's own field. Only listed: the dotted options are read by :meth:`_take_config_tokens`."""
        for field in dataclasses.fields(cls):
            entries = field.metadata.get("entries")
            if entries is None:
                continue
            group = self.add_argument_group(f"{field.name} keys (one entry of the {field.name} mapping)")
            for name, entry in entries().items():
                group.add_argument(
                    f"--{field.name}.{name}",
                    dest=f"{field.name}.{name}",
                    default=argparse.SUPPRESS,
                    metavar=metavar_of(entry.hint),
                    help=f"{_without_default(entry.help)} (default: {_flow(entry.default)})".replace("%", "%%"),
                )

    def parse_config_args(self, args: Sequence[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
        """The config keys given in ``args`` (default ``sys.argv[1:]``) under their own names (aliases resolved,
        dotted ones included), and the namespace of the parser's other options. Unknown options (with a
        did-you-mean), refused names and stray tokens raise :class:`InvalidConfigError`."""
        given, others = self._take_config_tokens(list(sys.argv[1:] if args is None else args))
        namespace, rest = self.parse_known_args(others)
        if rest:
            self._refuse_unknown_keys(rest)
        values = resolve_names(given, self.config_class, where="on the command line", prefix="--")
        keys = key_types(self.config_class)
        others_namespace = argparse.Namespace(**{k: v for k, v in vars(namespace).items() if k not in keys})
        return values, others_namespace

    def _refuse_unknown_keys(self, rest: Sequence[str]) -> None:
        """Tokens neither a key nor an option of the command: unknown keys (with a did-you-mean over the keys, their
        aliases and the command's own options, and the accepted keys), or a stray value."""
        unknown = [token.partition("=")[0] for token in rest if token.startswith("--")]
        if not unknown:
            raise InvalidConfigError(f"Expected a --key on the command line, got {rest[0]!r}.")
        candidates = [*(f"--{name}" for name in known_names(self.config_class)), *self.option_names()]
        keys = ", ".join(key_types(self.config_class))
        own = [  # the options --help lists that are not config keys (nor a key's entries)
            action.option_strings[0]
            for action in self._actions
            if action.help != argparse.SUPPRESS
            and action.option_strings[:1] != ["-h"]
            and action.option_strings
            and action.option_strings[0].startswith("--")
            and "." not in action.option_strings[0]
            and action.dest not in key_types(self.config_class)
        ]
        listing = f"the command's options: {', '.join(own)}; config keys: {keys}." if own else f"accepted keys: {keys}."
        raise unknown_names_error(unknown, candidates, listing=listing)

    def _take_config_tokens(self, tokens: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Split the tokens into the config keys given (``{name as given: value}``: a key, an alias, a refused name
        or a dotted entry, ``-`` read as ``_``) and the tokens of the command's own options. A key's value is the next
        token (one that does not start with ``--``; none: ``true``); a list key takes every such token."""
        cls = self.config_class
        types = key_types(cls)
        names = {*types, *key_aliases(cls), *refused_names(cls)}
        given: dict[str, Any] = {}
        others: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            written, has_value, text = token[2:].partition("=")
            name = written.replace("-", "_")
            if not token.startswith("--") or (name not in names and name.partition(".")[0] not in types):
                others.append(token)
                index += 1
                continue
            values = [text] if has_value else []
            while not has_value and index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
                values.append(tokens[index + 1])
                index += 1
                if not _takes_items(types.get(name)):
                    break
            given.pop(name, None)  # a name given twice: the last value stands, as argparse does
            given[name] = _token_value(name, values, types.get(name))
            index += 1
        return given, others


def _takes_items(hint: Any) -> bool:
    """Whether a key's value may be given item by item (``--eval_ks 1 4``): a list key."""
    return hint is not None and is_list_type(hint)


def _token_value(name: str, texts: list[str], hint: Any) -> Any:
    """The value of a key from the tokens after it: none -> ``true``; several -> the list of their YAML values; one
    -> its YAML value, made a list of one for a list key that cannot take it as it is (``--eval_ks 4``, ``--report_to
    wandb``)."""
    if not texts:
        return True
    values = [yaml_value(text) for text in texts]
    if len(values) > 1:
        return values
    (value,) = values
    if hint is None or not _takes_items(hint) or value is None or isinstance(value, list):
        return value
    try:
        coerce(name, value, hint)
        return value
    except InvalidConfigError:
        return [value]


_DEFAULT_SENTENCE = re.compile(r"\s*Default: .*$", re.DOTALL)


def _without_default(text: str) -> str:
    """A field's help without its own closing ``Default: ...`` sentence (PUMAConfig's), since ``--help`` adds the
    default once, as YAML writes it."""
    return _DEFAULT_SENTENCE.sub("", text)


def _flow(value: Any) -> str:
    """A default as it is written in YAML: ``null``, ``true``, ``[0.9, 0.999]``, ``{}``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()
    return text.removesuffix("...").strip()


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key written twice in one mapping: plain YAML lets the last one win without
    a word, so ``learning_rate: 0.001`` then ``learning_rate: 0.5`` (or two ``puma:`` blocks) would silently train
    with the second."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base loader refuses an unhashable key with its own message
            line = key_node.start_mark.line + 1
            if key in first_lines:
                raise _DuplicateKeyError(key, first_lines[key], line)
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, first_line: int, second_line: int) -> None:
        super().__init__(key, first_line, second_line)
        self.key, self.first_line, self.second_line = key, first_line, second_line


def _read_config_file(path: str | os.PathLike, cls: type) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except OSError as error:
        raise InvalidConfigError(f"Cannot read config file {os.fspath(path)!r}: {error.strerror or error}.") from None
    except _DuplicateKeyError as error:
        raise InvalidConfigError(
            f"Config file {os.fspath(path)!r} gives the key {error.key!r} twice (lines {error.first_line} and "
            f"{error.second_line}); keep one of them."
        ) from None
    except yaml.YAMLError as error:
        raise InvalidConfigError(f"Config file {os.fspath(path)!r} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidConfigError(f"Config file {os.fspath(path)!r} must hold a mapping of keys, got {type(values)}.")
    return resolve_names(values, cls, where=f"in config file {os.fspath(path)!r}")


def _is_token_list(overrides: Any) -> bool:
    return isinstance(overrides, Sequence) and not isinstance(overrides, str | bytes | Mapping)


def _set_key(values: dict[str, Any], key: str, value: Any, cls: type) -> None:
    """``values[key] = value``; a dotted key sets one entry of a mapping key, starting from its default."""
    head, dot, entry = key.partition(".")
    if not dot:
        values[key] = value
        return
    types = key_types(cls)
    if head not in types or not is_mapping_type(types[head]):
        mappings = [name for name, hint in types.items() if is_mapping_type(hint)]
        raise InvalidConfigError(f"{key!r}: only mapping keys take dotted overrides ({', '.join(mappings)}).")
    current = values.get(head)
    if current is None:
        current = key_default(cls, head) or {}
    if not isinstance(current, Mapping):
        raise InvalidConfigError(f"{key!r}: {head} is {current!r}, not a mapping.")
    values[head] = {**current, entry: value}
