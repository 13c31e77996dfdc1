"""Strict loading of frozen settings dataclasses from plain mappings (parsed YAML or JSON).

Every subsystem declares its settings as a frozen dataclass whose fields are made with
:func:`setting`, which holds the default, a one-line help text with the unit, and the allowed
range. :func:`build` turns a mapping into such a dataclass and fails with :class:`SettingsError`
naming the dotted key and the bad value for unknown keys, wrong types and out-of-range values.
The defaults written here are the only defaults: the shipped YAML is checked against them by a test.

Numbers must be finite (NaN passes every ``<``/``>`` comparison, so a range check alone lets it
through) unless the field says ``accepts_nonfinite=True``; integers must fit in 64 bits; strings
may not contain NUL characters (no OS path or device name can). Values quoted in error messages
are shortened (:func:`shown`), so a hostile value cannot flood the log.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

INT_RANGE = (-(2**63), 2**63 - 1)  # what SQLite, numpy and C libraries can hold

class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # printing it is slow (and refused past 4300 digits on Python 3.11)
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 6, 6, 6
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 80, 40, 80


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length and depth, for error messages."""
    return _SHORT.repr(value)


class SettingsError(ValueError):
    """A settings value is missing, unknown, of the wrong type or out of range."""


def setting(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    accepts_nonfinite: bool = False,
) -> Any:
    """Declare a settings field with its default, help text (with unit) and allowed range.

    Numbers given to it must be finite unless ``accepts_nonfinite`` (then NaN and infinities pass,
    and only the finite ones are range-checked).
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices, "accepts_nonfinite": accepts_nonfinite}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults so settings stay immutable")
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type[T], help: str) -> Any:
    """Declare a nested settings section whose defaults come from its own dataclass."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (ints to floats, lists to tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except SettingsError as exc:
                errors.append(str(exc))
        if len(errors) == 1:  # ``X | None``: the one real type's message says more
            raise SettingsError(errors[0])
        raise SettingsError(f"{key}: expected {_type_name(tp)}, got {shown(value)}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if not isinstance(value, (str, int, float, bool, type(None))) or value not in allowed:
            raise SettingsError(f"{key}: must be one of {', '.join(map(repr, allowed))}, got {shown(value)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{key}: expected a list, got {shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise SettingsError(f"{key}: expected a list of {len(args)} values, got {shown(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{key}: expected a mapping of settings, got {shown(value)}")
        return build(tp, value, prefix=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{key}: expected true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{key}: expected an integer, got {shown(value)}")
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise SettingsError(f"{key}: integer out of the 64-bit range, got {shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{key}: expected a number, got {shown(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range
            raise SettingsError(f"{key}: number out of range, got {shown(value)}") from None
    if tp is str:
        if not isinstance(value, str):
            raise SettingsError(f"{key}: expected a string, got {shown(value)}")
        if "\x00" in value:
            raise SettingsError(f"{key}: contains a NUL character, got {shown(value)}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"{key}: unsupported settings type {tp!r}")


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    """Refuse non-finite numbers (unless the field accepts them) and numbers outside [min, max]."""
    if value is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, float):
            continue
        if not math.isfinite(v):
            if meta.get("accepts_nonfinite"):
                continue
            raise SettingsError(f"{key}: must be a finite number, got {shown(value)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        if meta.get("min") is not None and v < meta["min"]:
            raise SettingsError(f"{key}: must be >= {meta['min']}, got {shown(value)}")
        if meta.get("max") is not None and v > meta["max"]:
            raise SettingsError(f"{key}: must be <= {meta['max']}, got {shown(value)}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise SettingsError(f"{key}: must be one of {', '.join(map(repr, meta['choices']))}, got {shown(value)}")


def build(cls: type[T], values: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Make ``cls`` from ``values``; missing keys take their defaults, anything else must be valid."""
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise SettingsError(f"{prefix or 'config'}: expected a mapping of settings, got {shown(values)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in known:
            where = f"{prefix}.{name}" if prefix else str(name)
            where = where if len(where) <= 120 else shown(where)
            raise SettingsError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, f in known.items():
        if name not in values:
            continue
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(values[name], hints[name], key)
        _check_range(value, f.metadata, key)
        kwargs[name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except SettingsError as exc:
            raise SettingsError(f"{prefix}.{exc}" if prefix else str(exc)) from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain nested dict of a settings dataclass (tuples become lists), for JSON and YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def describe(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every leaf setting of ``cls``, in declaration order."""
    rows: list[tuple[str, Any, str]] = []
    defaults = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(describe(hints[f.name], key))
        else:
            rows.append((key, getattr(defaults, f.name), f.metadata.get("help", "")))
    return rows


def render_yaml(cls: type, indent: int = 0) -> str:
    """YAML text of ``cls``'s defaults with every key commented (its help text), sections nested."""
    import yaml

    lines: list[str] = []
    defaults = cls()
    hints = typing.get_type_hints(cls)
    pad = "  " * indent
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "")
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"{pad}# {help_text}")
            lines.append(f"{pad}{f.name}:")
            lines.append(render_yaml(hints[f.name], indent + 1).rstrip("\n"))
            lines.append("")
            continue
        value = getattr(defaults, f.name)
        value = list(value) if isinstance(value, tuple) else value
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        for line in help_text.split("\n"):
            lines.append(f"{pad}# {line}")
        lines.append(f"{pad}{f.name}: {text}")
    return "\n".join(lines) + "\n"
