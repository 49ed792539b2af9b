"""The operator contract: parameters with shape rules, attributes, validated workloads.

An operator subclasses :class:`OpSpec` once and declares everything about itself there: its
tensor parameters and attributes, validation, the TE compute, FLOPs, default schedules, an
independent reference and example workloads. A :class:`Workload` is the frozen, canonical
value (operator name + normalised arguments) that the database, search and torch bridge share.
Nothing here imports TVM; only :meth:`OpSpec.compute` bodies do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import WorkloadError


@dataclass(frozen=True)
class TensorParam:
    """A tensor argument: ``dims`` names its axes (for messages and docs)."""

    name: str
    dims: tuple[str, ...]
    dtype: str | None = None  # None: the workload's dtype
    optional: bool = False
    doc: str = ""

    def describe(self) -> str:
        dt = self.dtype or "dtype"
        opt = "=None" if self.optional else ""
        return f"{self.name}[{','.join(self.dims)}]:{dt}{opt}"


@dataclass(frozen=True)
class Attr:
    """A scalar attribute. ``kind`` is "int", "pair" (int or 2-tuple), "bool" or "str"."""

    name: str
    kind: str
    default: Any
    minimum: int | None = None
    choices: tuple | None = None
    doc: str = ""

    def describe(self) -> str:
        return f"{self.name}={self.default!r}"

    def normalize(self, value: Any) -> Any:
        def bad(rule: str):
            return WorkloadError(f"attribute '{self.name}' {rule}, got {value!r}")

        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad("must be true or false")
            return value
        if self.kind == "str":
            if self.choices and value not in self.choices:
                raise bad(f"must be one of {', '.join(map(str, self.choices))}")
            return value
        if self.kind == "int":
            items = [value]
        elif self.kind == "pair":
            items = list(value) if isinstance(value, (list, tuple)) else [value, value]
            if len(items) != 2:
                raise bad("must be an int or a pair of ints")
        else:  # pragma: no cover - declaration error
            raise TypeError(self.kind)
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad("must be an integer" if self.kind == "int" else "must be an int or a pair of ints")
            if self.minimum is not None and v < self.minimum:
                raise bad(f"must be >= {self.minimum}")
        return items[0] if self.kind == "int" else tuple(items)


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


@dataclass(frozen=True)
class Workload:
    """One operator at fixed shapes and attributes; hashable, with a canonical JSON form.

    ``args`` maps each tensor parameter to its shape (``None`` for an absent optional tensor)
    and each attribute to its normalised value, plus ``dtype``.
    """

    op: str
    items: tuple[tuple[str, Any], ...]

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.items)

    def __getitem__(self, key: str) -> Any:
        return dict(self.items)[key]

    def json_args(self) -> dict[str, Any]:
        """Arguments as plain JSON values (lists for shapes), the ``--args`` form."""
        return {k: _thaw(v) for k, v in self.items}

    def key(self) -> str:
        """Canonical JSON text: equal workloads have equal keys."""
        return json.dumps({"op": self.op, "args": self.json_args()}, sort_keys=True, separators=(",", ":"))

    def distance(self, other: "Workload") -> float:
        """How far ``other`` is from this workload, for reusing schedules between shapes: inf for
        another operator or dtype, else the summed |log ratio| of every shape and size (+1 to
        allow zeros, e.g. padding 0) plus one per differing attribute."""
        if other.op != self.op:
            return math.inf
        theirs = other.args
        d = 0.0
        for k, va in self.items:
            vb = theirs.get(k)
            if isinstance(va, tuple) and va and isinstance(va[0], int) and isinstance(vb, tuple) and len(va) == len(vb):
                d += sum(abs(math.log((x + 1) / (y + 1))) for x, y in zip(va, vb))
            elif k == "dtype" and va != vb:
                return math.inf
            elif va != vb:
                d += 1.0
        return d

    def short(self) -> str:
        """A compact human label, e.g. ``x=1x64x56x56 weight=64x64x3x3 dilation=2x2``."""
        parts = []
        for k, v in self.items:
            if v is None or k == "dtype" and v == "float32":
                continue
            if isinstance(v, tuple):
                v = "x".join(map(str, v))
            parts.append(f"{k}={v}")
        return " ".join(parts)


class OpSpec:
    """Base of every operator declaration. Subclasses set the class attributes and override
    ``check``, ``output_shape``, ``compute``, ``flops`` and ``reference``."""

    name: str = ""
    family: str = ""
    doc: str = ""
    tensors: tuple[TensorParam, ...] = ()
    attrs: tuple[Attr, ...] = ()
    dtypes: tuple[str, ...] = ("float32",)
    examples: Mapping[str, dict] = {}
    # Tolerance of ||out - ref|| / ||ref|| against the float64 reference (0 means exact).
    tolerance: float = 1e-5

    # ------------------------------------------------------------------ workloads
    @property
    def signature(self) -> str:
        parts = [t.describe() for t in self.tensors] + [a.describe() for a in self.attrs]
        return f"{self.name}({', '.join(parts)})"

    def workload(self, **kwargs: Any) -> Workload:
        """Validate and normalise workload arguments (tensor shapes and attributes)."""
        known = {t.name for t in self.tensors} | {a.name for a in self.attrs} | {"dtype"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise WorkloadError(
                f"{self.name}: unknown parameter '{unknown[0]}' (expected {', '.join(sorted(known))})"
            )
        dtype = kwargs.get("dtype", self.dtypes[0])
        if dtype not in self.dtypes:
            raise WorkloadError(f"{self.name}: dtype '{dtype}' is not supported (supported: {', '.join(self.dtypes)})")
        a: dict[str, Any] = {"dtype": dtype}
        for t in self.tensors:
            shape = kwargs.get(t.name)
            if shape is None:
                if not t.optional:
                    raise WorkloadError(f"{self.name}: missing tensor '{t.name}' with shape [{', '.join(t.dims)}]")
                a[t.name] = None
                continue
            if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape
            ):
                raise WorkloadError(f"{self.name}: shape of '{t.name}' must be a list of integers, got {shape!r}")
            ranked = t.dims[0] != "..."
            if ranked and len(shape) != len(t.dims):
                raise WorkloadError(
                    f"{self.name}: '{t.name}' must have rank {len(t.dims)} [{', '.join(t.dims)}], got shape {list(shape)}"
                )
            if not ranked and len(shape) < len(t.dims) - 1:
                raise WorkloadError(f"{self.name}: '{t.name}' must have rank >= {len(t.dims) - 1}, got shape {list(shape)}")
            if any(d <= 0 for d in shape):
                raise WorkloadError(f"{self.name}: every dimension of '{t.name}' must be positive, got {list(shape)}")
            a[t.name] = tuple(shape)
        for at in self.attrs:
            try:
                a[at.name] = at.normalize(_freeze(kwargs.get(at.name, at.default)))
            except WorkloadError as e:
                raise WorkloadError(f"{self.name}: {e}") from None
        self.check(a)
        self.output_shape(a)  # checks that the output is non-empty
        return Workload(self.name, tuple(sorted(a.items())))

    def example(self, name: str) -> Workload:
        if name not in self.examples:
            raise WorkloadError(f"{self.name}: unknown example '{name}' (examples: {', '.join(self.examples)})")
        return self.workload(**self.examples[name])

    def fail(self, param: str, rule: str) -> WorkloadError:
        return WorkloadError(f"{self.name}: '{param}' {rule}")

    def check_bias(self, a: dict, channels: int) -> None:
        """The optional ``bias`` tensor, when present, must be [channels]."""
        if a.get("bias") is not None and a["bias"] != (channels,):
            raise self.fail("bias", f"must have shape [{channels}], got {list(a['bias'])}")

    # ------------------------------------------------------------------ to override
    def check(self, a: dict) -> None:
        """Cross-parameter rules; raise ``self.fail(param, rule)``."""

    def output_shape(self, a: dict) -> tuple[int, ...]:
        raise NotImplementedError

    def output_dtype(self, a: dict) -> str:
        return a["dtype"]

    def compute(self, a: dict, ins: dict[str, Any]):
        """Return the output ``te.Tensor`` from placeholders ``ins`` (tensors and constants)."""
        raise NotImplementedError

    def constants(self, a: dict) -> dict[str, "Any"]:
        """Extra constant inputs (numpy arrays) the kernel takes after the tensors, e.g. DFT
        matrices. They are derived from the workload alone."""
        return {}

    def flops(self, wl: Workload | None = None, **kwargs: Any) -> int:
        """Floating-point (or integer) operations of one call; ``op.flops(**args)`` works too."""
        if wl is None:
            wl = self.workload(**kwargs)
        return int(self._flops(wl.args))

    def _flops(self, a: dict) -> float:
        raise NotImplementedError

    def reference(self, a: dict, **tensors):
        """Independent PyTorch/NumPy implementation over torch tensors, in their dtype."""
        raise NotImplementedError

    def baseline(self, a: dict, **tensors):
        """What a PyTorch user would run instead (float32, timed by benchmarks); by default the
        reference itself, overridden where a faster pure-PyTorch formulation exists."""
        return self.reference(a, **tensors)

    def sample(self, a: dict, param: TensorParam, shape: tuple[int, ...], gen, dtype):
        """A random input for ``param``; override for integer or structured parameters."""
        import torch

        return torch.randn(shape, generator=gen, dtype=dtype)

    # ------------------------------------------------------------------ schedules
    # Default (untuned) schedules: the generic ones in ``opsearch.ops.schedules`` unless an
    # operator knows better.
    # Injective stages the default schedules keep as stages instead of inlining them.
    keep_stages: tuple[str, ...] = ()

    def schedule_cpu(self, sch, target, a: dict) -> None:
        from .schedules import default_cpu

        default_cpu(sch, target, keep=self.keep_stages)

    def schedule_cuda(self, sch, target, a: dict) -> None:
        from .schedules import default_cuda

        default_cuda(sch, target, keep=self.keep_stages)


def out_len(size: int, pad_lo: int, pad_hi: int, dilation: int, kernel: int, stride: int) -> int:
    """Output length of a strided, dilated, padded window (torch's formula)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


#: ``F.conv2d``'s stride, padding, dilation and groups, as the 2-D convolutions declare them.
CONV2D_ATTRS = (
    Attr("stride", "pair", 1, minimum=1),
    Attr("padding", "pair", 0, minimum=0),
    Attr("dilation", "pair", 1, minimum=1),
    Attr("groups", "int", 1, minimum=1),
)


def window_out_hw(op: "OpSpec", a: dict, kh: int, kw: int, param: str) -> tuple[int, int]:
    """(Ho, Wo) of a ``kh`` x ``kw`` window slid over ``a["x"]``'s last two axes with the
    workload's stride, padding and dilation; raises ``op.fail(param, ...)`` when it is empty."""
    h, w = a["x"][-2:]
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    ho, wo = out_len(h, ph, ph, dh, kh, sh), out_len(w, pw, pw, dw, kw, sw)
    if ho <= 0 or wo <= 0:
        raise op.fail(param, f"dilated kernel ({kh}x{kw}, dilation {dh}x{dw}) is larger than the padded input")
    return ho, wo


def prod(xs) -> int:
    return math.prod(xs)

