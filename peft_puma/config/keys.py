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
processes (the per-process batch: four processes of 45 train the run of one of 180, docs/spec.md section 6);
``compare=`` turns a saved or wanted value into what is compared (``mixed_precision``: the precision that applies).

Other names a key answers to are declared on the key too, so the alias table is one place (docs/training.md lists
it): ``aliases=`` are other names for the same thing (transformers' ``TrainingArguments`` names: ``num_train_epochs``
is ``epochs``), accepted in config files and on the command line and rewritten by :func:`resolve_names`; ``refused=``
are names a user from elsewhere may try that mean something else here, each refused with why and the key to use
(``max_grad_norm`` clips a norm, ``grad_clamp`` clamps each element). A name that is none of these gets a
did-you-mean (:func:`did_you_mean`) over the keys and their aliases.

:func:`check_types` coerces and checks every key against its annotation (numbers written as strings, as YAML 1.1 reads
``1e-4``, become numbers); the small checks (:func:`check_choice`, :func:`check_positive`, ...) word every refusal as
an :class:`~peft_puma.errors.InvalidConfigError` naming the key, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    aliases: Sequence[str | Alias] = (),
    refused: Mapping[str, str] | None = None,
    metavar: str | None = None,
    compare: Callable[[Any], Any] | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A config key: a dataclass field whose metadata holds its ``help`` and its ``role`` (see the module docstring).

    ``entries``: for a mapping key whose entries are the fields of another dataclass (``puma``: PUMAConfig's), those
    fields, so that ``--help`` lists each as ``--KEY.ENTRY`` with its type and help. ``aliases``: other names of this
    key (a name, or an :class:`Alias` whose value is converted); ``refused``: ``{name: why}`` of names that mean
    something else, refused with ``why`` and this key's name. ``metavar``: how ``--help`` shows its value (default:
    from its type, :func:`metavar_of`). ``compare``: what a saved value is compared as (:mod:`peft_puma.runs.same_run`).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    metadata: dict[str, Any] = {"help": help, "role": role, "per_process": per_process}
    if entries is not None:
        metadata["entries"] = entries
    if before is not dataclasses.MISSING:
        metadata["before"] = before
    if aliases:
        metadata["aliases"] = tuple(Alias(alias) if isinstance(alias, str) else alias for alias in aliases)
    if refused:
        metadata["refused"] = dict(refused)
    if metavar is not None:
        metadata["metavar"] = metavar
    if compare is not None:
        metadata["compare"] = compare
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


class Alias(NamedTuple):
    """Another name of a key: ``name``, and ``value``, how a value given under that name reads as the key's value
    (``None``: as it is; ``bf16: true`` is ``mixed_precision: bf16``). ``meaning`` says so for the docs."""

    name: str
    value: Callable[[Any], Any] | None = None
    meaning: str = ""


def flag_alias(name: str, when_true: Any, when_false: Any) -> Alias:
    """An alias that is a switch: ``--NAME`` / ``NAME: true`` sets the key to ``when_true``, ``false`` to
    ``when_false`` (``bf16`` -> ``mixed_precision``; ``disable_tqdm`` -> ``progress_bar``)."""

    def value(given: Any) -> Any:
        if not isinstance(given, bool):
            raise InvalidConfigError(f"{name} takes true or false, got {given!r}.")
        return when_true if given else when_false

    return Alias(name, value, f"true: {_yaml_scalar(when_true)}, false: {_yaml_scalar(when_false)}")


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


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
    compare: Mapping[str, Callable[[Any], Any]] = dataclasses.field(default_factory=dict)


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
    compare = {f.name: f.metadata["compare"] for f in dataclasses.fields(cls) if "compare" in f.metadata}
    return KeyRoles(
        frozenset(by_role[CONTROL]),
        frozenset(by_role[RESULT]),
        per_process,
        types.MappingProxyType(before),
        types.MappingProxyType(compare),
    )


# ------------------------------------------------------------------------------------------------- other names
@functools.cache
def key_aliases(cls: type) -> dict[str, tuple[str, Alias]]:
    """Every alias of ``cls``'s keys -> ``(the key, the alias)``."""
    found: dict[str, tuple[str, Alias]] = {}
    for f in dataclasses.fields(cls):
        for alias in f.metadata.get("aliases", ()):
            if alias.name in found or alias.name in key_types(cls):
                raise TypeError(f"{cls.__name__}: the name {alias.name!r} is declared twice")
            found[alias.name] = (f.name, alias)
    return found


@functools.cache
def refused_names(cls: type) -> dict[str, tuple[str, str]]:
    """Every refused name of ``cls``'s keys -> ``(the key to use instead, why the name is refused)``."""
    return {name: (f.name, why) for f in dataclasses.fields(cls) for name, why in f.metadata.get("refused", {}).items()}


def known_names(cls: type) -> list[str]:
    """The names a config of ``cls`` accepts: its keys, then their aliases (what a did-you-mean chooses from)."""
    return [*key_types(cls), *key_aliases(cls)]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a mistyped ``name`` (``epoch`` -> ``epochs``), or ``None`` when none is close."""
    by_plain: dict[str, str] = {}
    for candidate in candidates:
        by_plain.setdefault(_plain(candidate), candidate)  # the first spelling of a name wins
    plain = _plain(name)
    matches = difflib.get_close_matches(plain, list(by_plain), n=1, cutoff=0.6)
    if not matches:  # a part: --lr_step for --lr_step_epochs, --keep_prob for --puma.keep_prob, --batch for
        matches = [c for c in by_plain if len(plain) >= 4 and plain in c][:1]  # --per_device_batch_size
    return by_plain[matches[0]] if matches else None


def _plain(name: str) -> str:
    """A name as compared: without leading dashes, with ``_`` for ``-`` (``--output-dir`` is ``output_dir``)."""
    return name.lstrip("-").replace("-", "_")


def unknown_names_error(
    unknown: Sequence[str], candidates: Iterable[str], *, what: str = "config key", prefix: str = "", listing: str = ""
) -> InvalidConfigError:
    """``Unknown config key(s) ['epoch'] (did you mean epochs?); <listing>``: one line for names a command does not
    know; ``prefix`` writes the names as the user gave them (``--`` on the command line)."""
    candidates = list(candidates)
    hints = [(name, did_you_mean(name, candidates)) for name in unknown]
    hints = [(name, match) for name, match in hints if match]
    if len(unknown) == 1 and hints:
        hint = f" (did you mean {prefix}{hints[0][1]}?)"
    elif hints:
        hint = " (did you mean " + ", ".join(f"{prefix}{match} for {prefix}{name}" for name, match in hints) + "?)"
    else:
        hint = ""
    shown = [f"{prefix}{name}" for name in unknown] if prefix else list(unknown)
    return InvalidConfigError(f"Unknown {what}(s) {shown}{hint}{'; ' + listing if listing else '.'}")


def resolve_names(values: Mapping[str, Any], cls: type, *, where: str = "", prefix: str = "") -> dict[str, Any]:
    """``values`` with every key under its own name: an alias becomes its key (its value converted), a refused name
    is an error saying why and which key to use, an unknown name an error with a did-you-mean; a key given under two
    names is an error. Dotted names (``puma.keep_prob``) keep their entry. ``where`` names the source in errors
    (``in config file 'c.yaml'``); ``prefix`` is how the source writes a name (``--`` on the command line)."""
    keys, aliases, refused = key_types(cls), key_aliases(cls), refused_names(cls)
    source = f" {where}" if where else ""
    for name in values:
        head = name.partition(".")[0]
        if head in refused:
            instead, why = refused[head]
            given = f" (given {where})" if where else ""
            raise InvalidConfigError(f"{prefix}{head}{given} is not a key here: {why} Use {prefix}{instead}.")
    unknown = [name for name in values if name.partition(".")[0] not in keys and name not in aliases]
    if unknown:
        raise unknown_names_error(
            unknown, known_names(cls), prefix=prefix, listing=f"accepted keys{source}: {', '.join(keys)}."
        )
    resolved: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for name, value in values.items():
        target, alias = aliases.get(name, (name, None))
        if alias is not None and alias.value is not None:
            value = alias.value(value)
        if target in given_as and given_as[target] != name:
            raise InvalidConfigError(
                f"{target} is given twice{source}, as {prefix}{given_as[target]} and as {prefix}{name}; give it once."
            )
        resolved[target], given_as[target] = value, name
    return resolved


# ----------------------------------------------------------------------------------------------------- --help
def choice_metavar(choices: Iterable[str]) -> str:
    """``{a,b,c}``: how ``--help`` shows a key that takes one of a few names, as argparse shows choices."""
    return "{" + ",".join(choices) + "}"


def metavar_of(hint: Any) -> str:
    """How ``--help`` shows a value of type ``hint``: ``INT``, ``FLOAT``, ``TEXT``, ``{true,false}``, ``INT ...`` (a
    list), ``MAPPING``; ``null`` is left out (each key's help says what null means)."""
    options = [option for option in _options(hint) if option is not type(None)]
    shown = []
    for option in options:
        origin = typing.get_origin(option)
        if origin is list:
            shown.append(f"{metavar_of(typing.get_args(option)[0])} ...")
        elif origin is dict:
            shown.append("MAPPING")
        else:
            shown.append({bool: "{true,false}", int: "INT", float: "FLOAT", str: "TEXT"}.get(option, "VALUE"))
    return shown[0] if len(shown) == 1 else "VALUE"


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


def is_list_type(hint: Any) -> bool:
    """Whether a key of this type may be a list (``--eval_ks 1 4`` gives its items one by one)."""
    return any(typing.get_origin(option) is list for option in _options(hint))


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
