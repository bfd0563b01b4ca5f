"""Config keys as dataclass fields: how one is declared (:func:`key`), its type checks, and its role in a run.

A key is a field declared with :func:`key`, which puts its ``--help`` text and its *role* in the field's metadata, so
that what a key means to a saved run is written beside the key, not in a list elsewhere:

- :data:`RECIPE`: what the run learns (the method, the loss, the optimiser, the data used). Two runs that differ in
  one are different runs: ``--resume`` refuses a checkpoint, and a finished run is not reused for another recipe.
- :data:`CONTROL`: how a run is steered (the output folder, logging, checkpoint cadence, data paths, workers). It may
  change between a checkpoint and its resumption.
- :data:`RESULT`: steers a checkpoint but is part of what a finished run is: its length and the split its results
  score. ``--resume`` may change it; reusing a finished run compares it.

``before=`` gives the value every run had before the key existed, so that checkpoints and finished runs saved without
it keep their identity (:class:`KeyRoles`); ``per_process=True`` marks a key that counts multiplied by the number of
processes (the per-process batch: four processes of 45 train the run of one of 180, docs/spec.md section 6).

:func:`check_types` coerces and checks every key against its annotation (numbers written as strings, as YAML 1.1 reads
``1e-4``, become numbers); the small checks (:func:`check_choice`, :func:`check_positive`, ...) word every refusal as
an :class:`~peft_puma.errors.InvalidConfigError` naming the key, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import InvalidConfigError

RECIPE = "recipe"
CONTROL = "control"
RESULT = "result"
ROLES: tuple[str, ...] = (RECIPE, CONTROL, RESULT)


def key(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    role: str = RECIPE,
    before: Any = dataclasses.MISSING,
    per_process: bool = False,
    entries: Callable[[], Mapping[str, Entry]] | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A config key: a dataclass field whose metadata holds its ``help`` and its ``role`` (see the module docstring).

    ``entries``: for a mapping key whose entries are the fields of another dataclass (``puma``: PUMAConfig's), those
    fields, so that ``--help`` lists each as ``--KEY.ENTRY`` with its type and help.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    metadata: dict[str, Any] = {"help": help, "role": role, "per_process": per_process}
    if entries is not None:
        metadata["entries"] = entries
    if before is not dataclasses.MISSING:
        metadata["before"] = before
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


class Entry(NamedTuple):
    """One declared entry of a mapping key: its type, help text and default (``--help`` lists it)."""

    hint: Any
    help: str
    default: Any


@dataclass(frozen=True)
class KeyRoles:
    """The roles of a config class's keys, read from their fields' metadata (:func:`key_roles`)."""

    control: frozenset[str]
    result: frozenset[str]
    per_process: frozenset[str]
    before: Mapping[str, Any]


@functools.cache
def key_roles(cls: type) -> KeyRoles:
    """Every key of ``cls`` by role; a field declared without :func:`key` is an error (its role would be a guess)."""
    by_role: dict[str, set[str]] = {role: set() for role in ROLES}
    before: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "role" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is declared without peft_puma.config.keys.key(role=...)")
        by_role[f.metadata["role"]].add(f.name)
        if "before" in f.metadata:
            before[f.name] = f.metadata["before"]
    per_process = frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("per_process"))
    return KeyRoles(
        frozenset(by_role[CONTROL]), frozenset(by_role[RESULT]), per_process, types.MappingProxyType(before)
    )


@functools.cache
def key_types(cls: type) -> dict[str, Any]:
    """Every key of ``cls`` -> its annotation, in declaration order (a base class's keys first)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def key_default(cls: type, name: str) -> Any:
    """The default of key ``name`` of ``cls`` (a fresh copy for list and mapping keys)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    raise KeyError(name)


def is_mapping_type(hint: Any) -> bool:
    """Whether a key of this type is a mapping (``--key.name VALUE`` sets one of its entries)."""
    return any(typing.get_origin(option) is dict for option in _options(hint))


def check_types(config: Any) -> None:
    """Coerce and check the type of every key of a config (a config built in Python bypasses the parser)."""
    for name, hint in key_types(type(config)).items():
        value = coerce(name, getattr(config, name), hint)
        refuse_non_finite(name, value)
        setattr(config, name, value)


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the key's type: numbers given as strings (``1e-4`` reads as a string in YAML 1.1) become
    numbers, ints become floats where a float is expected; anything else of the wrong type is an error."""
    for option in _options(hint):
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError):
            continue
    raise InvalidConfigError(f"Config key {name!r}: {value!r} is not a valid {type_name(hint)}.")


def type_name(hint: Any, separator: str = " or ") -> str:
    """``int | None`` -> ``"int or null"``: the accepted types, as they are written in YAML."""
    names = []
    for option in _options(hint):
        origin = typing.get_origin(option)
        if option is type(None):
            names.append("null")
        elif origin is list or origin is dict:
            names.append("list" if origin is list else "mapping")
        else:
            names.append(getattr(option, "__name__", str(option)))
    return separator.join(names)


def refuse_non_finite(name: str, value: Any) -> None:
    """NaN and infinity pass every ``<`` / ``>`` check, then wreck training far from the cause: stop them here."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidConfigError(f"{name} must be a finite number, got {value!r}.")
    if isinstance(value, dict):
        for entry, item in value.items():
            refuse_non_finite(f"{name}.{entry}", item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_non_finite(name, item)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InvalidConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def check_positive(name: str, value: Any) -> None:
    if value is None or value <= 0:
        raise InvalidConfigError(f"{name} must be positive, got {value!r}.")


def check_positive_or_none(name: str, value: Any) -> None:
    if value is not None and value <= 0:
        raise InvalidConfigError(f"{name} must be positive or null, got {value!r}.")


def check_not_negative(name: str, value: Any) -> None:
    if value < 0:
        raise InvalidConfigError(f"{name} must be >= 0, got {value!r}.")


def _options(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _coerce_one(value: Any, option: Any) -> Any:
    origin = typing.get_origin(option)
    if option is type(None):
        if value is None:
            return None
        raise TypeError("not null")
    if option is Any:
        return value
    if option is bool or option is str:
        if isinstance(value, option):
            return value
        raise TypeError(f"not a {option.__name__}")
    if option is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("not an int")
    if option is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return float(value)
        raise TypeError("not a float")
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
