"""The operator registry: declarations register themselves; lookups by name."""

from __future__ import annotations

from ..errors import UnknownOperatorError
from .spec import OpSpec

_OPS: dict[str, OpSpec] = {}


def register(cls: type[OpSpec]) -> type[OpSpec]:
    """Class decorator: instantiate the declaration and make it findable by its name."""
    if cls.name in _OPS:  # pragma: no cover - declaration error
        raise ValueError(f"operator {cls.name} registered twice")
    _OPS[cls.name] = cls()
    return cls


def names() -> list[str]:
    """Sorted operator names."""
    return sorted(_OPS)


def get(name: str) -> OpSpec:
    """The operator declaration called ``name``; raises :class:`UnknownOperatorError`."""
    try:
        return _OPS[name]
    except (KeyError, TypeError):
        raise UnknownOperatorError(
            f"unknown operator '{name}' (known: {', '.join(names())})"
        ) from None


def all_ops() -> list[OpSpec]:
    return [_OPS[n] for n in names()]
