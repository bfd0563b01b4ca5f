"""Reading a config: a YAML (or JSON) file of keys, then command-line overrides, through transformers'
``HfArgumentParser`` (docs/training.md, "Config keys").

:class:`ConfigArgumentParser` is ``HfArgumentParser`` over a config dataclass (``DataConfig``, or ``TrainingConfig``
which extends it): one option per key, named as the key (``--output_dir``; ``--output-dir`` is accepted too), whose
``--help`` line is the field's help and default. Values are read as YAML (``3``, ``1e-4``, ``null``, ``false``,
``[1, 2]``, ``{r: 8}``), a key without a value is ``true`` (``--resume``), and ``--mapping.key VALUE`` sets one entry of
a mapping key (``--puma.keep_prob 1.0``; a mapping whose entries are declared, as ``puma``'s, lists each of them in
``--help``). :func:`load_keys` starts from the file's keys and lets the given keys replace them; the dataclasses check
types and values themselves (:mod:`.keys`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from transformers.hf_argparser import HfArgumentParser

from ..errors import InvalidConfigError
from .keys import is_mapping_type, key_default, key_types, type_name


def load_keys(
    path: str | os.PathLike | None,
    overrides: Mapping[str, Any] | Sequence[str] | None,
    cls: type,
) -> Any:
    """A ``cls`` config (not validated yet) from a YAML file (optional) updated by overrides.

    ``overrides`` is a mapping of keys (a dotted key sets one entry of a mapping key: ``{"puma.keep_prob": 1.0}``) or
    a list of command-line tokens (``["--epochs", "3", "--puma.keep_prob=1.0"]``); they replace the file's values.
    """
    values = _read_config_file(path) if path is not None else {}
    if overrides is not None:
        given = parse_cli_overrides(overrides, cls) if _is_token_list(overrides) else dict(overrides)
        for key, value in given.items():
            _set_key(values, key, value, cls)
    return build_config(values, cls)


def build_config(values: Mapping[str, Any], cls: type) -> Any:
    """A config (not validated yet) from a mapping of its keys; unknown keys are an error naming the accepted ones."""
    keys = key_types(cls)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise InvalidConfigError(f"Unknown config key(s) {unknown}; accepted keys: {', '.join(keys)}.")
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


class ConfigArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` over the dataclasses of a config class, whose options take YAML values.

    A command adds its own options with ``add_argument``; :meth:`parse_config_args` returns the config keys given
    (for :func:`load_config`) and the namespace of the other options.
    """

    def __init__(self, cls: type, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --epoch is an unknown key, not --epochs
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)  # each key's help has its default
        self.config_class = cls
        keys = key_types(cls)
        self.config_options = {f"--{key}" for key in keys} | {f"--{key.replace('_', '-')}" for key in keys}
        super().__init__(cls, **kwargs)
        self._list_mapping_entries(cls)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        """HfArgumentParser's hook for one field (``field.type`` is resolved by then): ``--key VALUE``, the value read
        as YAML, ``true`` without one; a key not given stays out of the namespace, so a file's value stands."""
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        text = field.metadata.get("help", "")
        if is_mapping_type(field.type):
            text += f" One entry: --{field.name}.KEY VALUE."
        options = {
            "dest": field.name,
            "type": yaml_value,
            "nargs": "?",
            "const": True,
            "default": argparse.SUPPRESS,
            "metavar": type_name(field.type, "|").upper(),
        }
        parser.add_argument(f"--{field.name}", help=f"{text} (default: {_flow(default)})".replace("%", "%%"), **options)
        if "_" in field.name:  # the hyphenated spelling works too; --help shows one
            parser.add_argument(f"--{field.name.replace('_', '-')}", help=argparse.SUPPRESS, **options)

    def _list_mapping_entries(self, cls: type) -> None:
        """One ``--help`` section per mapping key with declared entries (``--puma.keep_prob FLOAT``), typed and
        explained by the entry's own field. Only listed: the dotted options are read by :meth:`_pair_values`."""
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
                    metavar=type_name(entry.hint, "|").upper(),
                    help=f"{entry.help} (default: {_flow(entry.default)})".replace("%", "%%"),
                )

    def parse_config_args(self, args: Sequence[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
        """The config keys given in ``args`` (default ``sys.argv[1:]``), dotted ones included, and the namespace of
        the parser's other options. Unknown keys and stray tokens raise :class:`InvalidConfigError`."""
        tokens, dotted = self._pair_values(list(sys.argv[1:] if args is None else args))
        namespace, rest = self.parse_known_args(tokens)
        keys = key_types(self.config_class)
        unknown = sorted({token[2:].partition("=")[0].replace("-", "_") for token in rest if token.startswith("--")})
        if unknown:
            raise InvalidConfigError(f"Unknown config key(s) {unknown}; accepted keys: {', '.join(keys)}.")
        if rest:
            raise InvalidConfigError(f"Expected a --key on the command line, got {rest[0]!r}.")
        given = {key: value for key, value in vars(namespace).items() if key in keys}
        others = argparse.Namespace(**{key: value for key, value in vars(namespace).items() if key not in keys})
        return {**given, **dotted}, others

    def _pair_values(self, tokens: list[str]) -> tuple[list[str], dict[str, Any]]:
        """``--key value`` of a config key becomes ``--key=value`` (a value may start with ``-``: ``-.inf``); the
        ``--mapping.key`` ones, which argparse cannot name, are taken out as ``{"mapping.key": value}``."""
        plain: list[str] = []
        dotted: dict[str, Any] = {}
        index = 0
        while index < len(tokens):
            token = tokens[index]
            key, has_value, text = token[2:].partition("=")
            if not token.startswith("--") or ("." not in key and token.partition("=")[0] not in self.config_options):
                plain.append(token)
                index += 1
                continue
            if not has_value and index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
                has_value, text, index = True, tokens[index + 1], index + 1
            if "." in key:
                dotted[key.replace("-", "_")] = yaml_value(text) if has_value else True
            else:
                plain.append(f"--{key}={text}" if has_value else token)
            index += 1
        return plain, dotted


def _flow(value: Any) -> str:
    """A default as it is written in YAML: ``null``, ``true``, ``[0.9, 0.999]``, ``{}``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
    except OSError as error:
        raise InvalidConfigError(f"Cannot read config file {os.fspath(path)!r}: {error.strerror or error}.") from None
    except yaml.YAMLError as error:
        raise InvalidConfigError(f"Config file {os.fspath(path)!r} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidConfigError(f"Config file {os.fspath(path)!r} must hold a mapping of keys, got {type(values)}.")
    return values


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
