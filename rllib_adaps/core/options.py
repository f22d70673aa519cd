"""Typed options from plain dicts (YAML, ``model_config``, keyword arguments), in one place.

Every option object of the package is a frozen dataclass that validates itself in
``__post_init__``; ``options_from_dict`` builds one from a dict, nested dataclasses included,
and refuses unknown keys with the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Iterable, Mapping, Type, TypeVar

T = TypeVar("T")


class SharingOptionError(ValueError):
    """An option a sharing method does not have, or a value it cannot take.

    ``key``: the option a user wrote that is not one (so that callers can point at it alone).
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def did_you_mean(word: Any, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def nested_option_types(cls: type) -> dict[str, type]:
    """Fields of ``cls`` whose type is itself an options dataclass (given as a dict)."""
    hints = typing.get_type_hints(cls)
    return {name: hint for name, hint in hints.items() if dataclasses.is_dataclass(hint)}


def options_from_dict(cls: Type[T], values: Mapping[str, Any], where: str) -> T:
    """``cls(**values)`` with nested dicts turned into their dataclasses; ``where`` names the
    options in errors (``"sharing method 'adaps'"``, ``"vae"``)."""
    if not isinstance(values, Mapping):
        raise SharingOptionError(f"Options of {where} must be a mapping, got {type(values).__name__}: {values!r}.")
    names = option_names(cls)
    unknown = [key for key in values if key not in names]
    if unknown:
        key = unknown[0]
        nested = [name for name, kind in nested_option_types(cls).items() if key in option_names(kind)]
        if nested:  # an option of a nested group given at the top
            raise SharingOptionError(f"{key!r} is an option of {nested[0]!r} for {where}: write {nested[0]}={{{key!r}: ...}} "
                                     f"(in YAML: {nested[0]}: {{{key}: ...}}).", key=key)
        valid = f"valid options: {', '.join(names)}" if names else "it takes no options"
        raise SharingOptionError(f"Unknown option {key!r} for {where}.{did_you_mean(key, names)} ({valid})", key=key)
    values = dict(values)
    for name, nested in nested_option_types(cls).items():
        if name in values and not isinstance(values[name], nested):
            try:
                values[name] = options_from_dict(nested, values[name] or {}, name)
            except SharingOptionError as err:
                raise SharingOptionError(str(err), key=f"{name}.{err.key}" if err.key else name) from None
    return cls(**values)
