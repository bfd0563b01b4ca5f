"""Reading a config: a YAML file, command-line overrides, and type coercion with clear errors (docs/training.md).

``--key value``, ``--key=value`` and ``--mapping.key value`` override the file; values are YAML scalars or flow
collections; numbers given as strings (YAML 1.1 reads ``1e-4`` as a string) become numbers.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..errors import InvalidConfigError
from .config import TrainingConfig, config_fields


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    cls: type = TrainingConfig,
) -> Any:
    """A validated config from a YAML file (optional) updated by overrides.

    ``overrides`` is a mapping of keys (dotted keys reach into mapping keys: ``{"puma.keep_prob": 1.0}``) or a list
    of command-line tokens (``["--epochs", "3", "--puma.keep_prob=1.0"]``). Later values win.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_yaml(path)
    if overrides is not None:
        pairs = parse_cli_overrides(overrides) if _is_token_list(overrides) else dict(overrides)
        for key, value in pairs.items():
            _set_dotted(values, key, value, cls)
    config = build_config(values, cls)
    return config.validate()


def build_config(values: Mapping[str, Any], cls: type = TrainingConfig) -> Any:
    """A config from a mapping of keys; unknown keys are an error naming the accepted ones."""
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InvalidConfigError(f"Unknown config key(s) {unknown}; accepted keys: {', '.join(fields)}.")
    return cls(**{key: coerce(key, value, fields[key].type) for key, value in values.items()})


def parse_cli_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--key", "value", "--flag", "--a.b=c"]`` -> ``{"key": value, "flag": True, "a.b": value}``.

    Values are read as YAML scalars or flow collections (``3``, ``true``, ``null``, ``[1, 2]``, ``{a: 1}``); a key
    followed by another key or by nothing is ``true``; ``-`` and ``_`` are interchangeable in key names.
    """
    result: dict[str, Any] = {}
    index = 0
    tokens = list(tokens)
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or len(token) == 2:
            raise InvalidConfigError(f"Expected a --key on the command line, got {token!r}.")
        key, has_value, text = token[2:].partition("=")
        if not has_value:
            if index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
                text, index = tokens[index + 1], index + 1
            else:
                text = "true"
        result[key.replace("-", "_")] = _parse_scalar(text)
        index += 1
    return result


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
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


def _set_dotted(values: dict[str, Any], key: str, value: Any, cls: type) -> None:
    head, dot, rest = key.partition(".")
    if not dot:
        values[key] = value
        return
    fields = config_fields(cls)
    if head not in fields or not _is_mapping_type(fields[head].type):
        mappings = [name for name, f in fields.items() if _is_mapping_type(f.type)]
        raise InvalidConfigError(f"{key!r}: only mapping keys take dotted overrides ({', '.join(mappings)}).")
    current = values.get(head)
    if current is None:
        default = fields[head].default_factory if fields[head].default_factory is not dataclasses.MISSING else dict
        current = dict(default())
    values[head] = {**current, rest: value}


def _is_mapping_type(annotation: Any) -> bool:
    hint = _resolve(annotation)
    return any(typing.get_origin(option) is dict for option in _options(hint))


# ---------------------------------------------------------------------------------------------------- type checking
_HINTS: dict[str, Any] = {}


def _resolve(annotation: Any) -> Any:
    if isinstance(annotation, str):
        if annotation not in _HINTS:
            namespace = {"Any": Any, "dict": dict, "list": list, "str": str, "int": int, "float": float, "bool": bool}
            _HINTS[annotation] = eval(annotation, namespace)  # noqa: S307 - our own dataclass annotations
        return _HINTS[annotation]
    return annotation


def _options(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """``value`` as the field's type: numbers given as strings (``1e-4`` reads as a string in YAML 1.1) become
    numbers, ints become floats where a float is expected; anything else of the wrong type is an error."""
    hint = _resolve(annotation)
    for option in _options(hint):
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError):
            continue
    raise InvalidConfigError(f"Config key {key!r}: {value!r} is not a valid {_describe(hint)}.")


def _coerce_one(value: Any, option: Any) -> Any:
    origin = typing.get_origin(option)
    if option is type(None):
        if value is None:
            return None
        raise TypeError("not null")
    if option is Any:
        return value
    if option is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("not a bool")
    if option is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("not an int")
    if option is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise TypeError("not a float")
    if option is str:
        if isinstance(value, str):
            return value
        raise TypeError("not a string")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise TypeError("not a list")
        (item,) = typing.get_args(option)
        return [_coerce_one(v, item) for v in value]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError("not a mapping")
        _, item = typing.get_args(option)
        return {str(k): _coerce_one(v, item) for k, v in value.items()}
    raise TypeError(f"unsupported annotation {option}")


def _describe(hint: Any) -> str:
    names = []
    for option in _options(hint):
        if option is type(None):
            names.append("null")
        elif typing.get_origin(option) is list:
            names.append("list")
        elif typing.get_origin(option) is dict:
            names.append("mapping")
        else:
            names.append(getattr(option, "__name__", str(option)))
    return " or ".join(names)
