"""The operator registry: declarations register themselves; lookups by name; a workload's sample inputs."""

from __future__ import annotations

from ..errors import UnknownOperatorError
from .spec import OpSpec, Workload

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


def sample_inputs(wl: Workload, seed: int = 0) -> dict:
    """Random float32 torch inputs of ``wl`` by parameter name (the operator's own sampler), the
    same for the same seed: what benchmarks and kernel selection time kernels on."""
    import torch

    op = get(wl.op)
    gen = torch.Generator().manual_seed(seed)
    a = wl.args
    return {p.name: op.sample(a, p, a[p.name], gen, torch.float32) for p in op.tensors if a[p.name] is not None}
