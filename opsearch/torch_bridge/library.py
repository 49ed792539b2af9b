"""Every opsearch operator as a PyTorch operator: ``torch.ops.opsearch.<name>``.

Each operator is defined with ``torch.library.Library`` (schema from its :class:`OpSpec`:
tensors in signature order, optional ones as ``Tensor?``, then attributes: ``int[]`` for
per-axis pairs, ``int``, ``bool``), with four kernels: CPU (the compiled TVM kernel), CUDA
(:class:`_CudaForward`: the workload's cubin for the tensors' GPU, launched through the CUDA
driver on their memory and the current stream; needs TVM and nvcc to build it once), fake
(``torch.library.register_fake``: the output shape from ``op.output_shape``, so the ops trace
under ``torch.compile(fullgraph=True)``) and Autograd (an ``autograd.Function`` when an input
needs a gradient; otherwise straight into the CPU kernel when that is the only key left, which
saves the second trip through the dispatcher that ``torch.library.custom_op`` and
``register_autograd`` take on every call). The CPU kernel looks up the compiled TVM kernel for
the call's shapes (one dict lookup after the first call), allocates the output with
``torch.empty`` and lets the kernel write into it; inputs are passed zero-copy and copied only
when non-contiguous or not 64-byte aligned.

Native kernels (:mod:`opsearch.torch_bridge.native`, the default where a C++ compiler is available):
the CPU and Autograd kernels are C++ instead. The CPU kernel keeps a plan per call signature
(shapes, dtypes, attribute values -> TVM function, output shape and dtype, constants) and calls
the TVM function through tvm-ffi's C API with DLTensor views, so a call through
``torch.ops.opsearch`` runs no Python once its shapes were seen (+7 µs over calling the TVM
function from Python, against +31 µs with the Python kernels). A call with no plan goes to
``opsearch::_slow_<name>`` (:meth:`_Forward.slow`, the Python kernel below), which hands the plan
back; a call needing a gradient goes to ``opsearch::_autograd_<name>`` (the ``autograd.Function``
below). With the Python kernels the Autograd kernel is the one described next.

Kernels come from :func:`kernel_for`, the one place that picks a kernel for a workload (today
the default schedule, through the disk cache; tuned records later). :func:`configure` sets the
target and database the ops use.

Backward (``torch.library.register_autograd``; the formulas are in :mod:`opsearch.torch_bridge.backward`), per
operator:

- ``dilated_conv2d``: TE kernels. Input gradient = ``dilated_conv2d`` of the output gradient
  with the flipped, transposed kernel (stride 1; padding ``(K-1)·d - p`` >= 0); weight gradient =
  ``dilated_conv2d`` of the transposed input with the transposed output gradient as kernel
  (the forward dilation becomes the stride, the stride the dilation; groups = 1). Other cases
  (stride > 1 input gradient, grouped weight gradient) use the fallback below.
- ``dilated_conv1d``: TE kernels, the same two convolutions as 2-D workloads with H = 1 (the
  causal padding applied with ``F.pad``).
- every other operator (shift_conv2d, shift_linear, adder_conv2d, condconv2d,
  lightweight_conv1d, dynamic_conv1d, involution2d, fft_conv1d), and the cases above that TE
  does not cover: **PyTorch fallback** — ``torch.func.vjp`` through the operator's pure-PyTorch
  formulation (``OpSpec.baseline``, which is the reference unless a faster equivalent exists),
  recomputed from the saved inputs inside the opaque op ``opsearch::<name>_vjp``. Gradients are
  the true gradients of the definition (AdderNet's gradient is ``-sign(x - W)``, not the
  paper's HardTanh surrogate). Integer inputs (shifts, sign, shift) get no gradient.

Double backward is not supported. The fallback's ``<name>_vjp`` op runs ``torch.func.vjp``
inside; PyTorch's debugging dispatch modes (``SchemaCheckMode``, ``CrossRefFakeMode``) cannot run
it directly (``opcheck`` of the forward ops, whose backward it is, passes).

Threads: importing this module sets ``TVM_THREAD_POOL_SPIN_COUNT=0`` unless the variable is
already set (it must be set before TVM's first parallel kernel). TVM's workers otherwise
busy-wait after each kernel and starve PyTorch's own threads in the layers in between: a TCN
of 10 opsearch layers plus PyTorch ReLUs ran 8x slower with the default spinning.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import torch

from .. import ops as _ops
from ..errors import InputError
from ..ops.spec import OpSpec, Workload
from ..runtime import kernels
from . import native
from .backward import backward_fn, differentiable

os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")

NAMESPACE = "opsearch"
_ALIGN = 64  # bytes; TVM kernels assume 64-byte aligned buffers
_ATTR_TYPES = {"pair": "int[]", "int": "int", "bool": "bool", "str": "str"}
_DTYPE_NAMES = {torch.float32: "float32", torch.int32: "int32", torch.int8: "int8"}


# --------------------------------------------------------------------------- kernel choice
class _Config:
    target: str = "cpu"
    db: Any = None


_config = _Config()
_lock = threading.Lock()
_recorders: list[list[Workload]] = []


@contextlib.contextmanager
def recording():
    """Collect the workload of every forward kernel call made inside the block, in order."""
    rec: list[Workload] = []
    _recorders.append(rec)
    if _NATIVE:
        torch.ops.opsearch._native_bypass(True)  # every call through Python, where it is recorded
    try:
        yield rec
    finally:
        _recorders.remove(rec)
        if _NATIVE:
            torch.ops.opsearch._native_bypass(bool(_recorders))


def kernel_for(wl: Workload, target: str = "cpu", db: Any = None) -> kernels.Kernel:
    """The kernel to run for ``wl`` on ``target``: the single switch point between default and
    tuned kernels (see :mod:`opsearch.runtime.loading`: tuned record, nearest tuned workload, default)."""
    from ..runtime.loading import kernel_for as pick

    return pick(wl, target, db)


def schedule_source(kernel: kernels.Kernel) -> str:
    """How ``kernel`` was scheduled, for reports (``kernel.source`` when set)."""
    return getattr(kernel, "source", "default schedule")


def configure(target: str = "cpu", db: Any = None) -> None:
    """Set the target and database ``torch.ops.opsearch.*`` use (process-wide)."""
    from ..errors import TargetError
    from ..targets import resolve

    spec = resolve(target)
    if spec.kind != "llvm":
        raise TargetError(f"torch operators run on the CPU; target '{spec.name}' is not a CPU target")
    with _lock:
        _config.target, _config.db = target, db
        if _NATIVE:
            torch.ops.opsearch._native_clear()
        for fwd in _FORWARD.values():
            fwd.plans.clear()


def reset() -> None:
    """Forget every kernel the operators picked, so the next calls ask :func:`kernel_for` again
    (e.g. after new tuning records arrived)."""
    with _lock:
        if _NATIVE:
            torch.ops.opsearch._native_clear()  # before the kernels it points at are dropped
        for fwd in _FORWARD.values():
            fwd.table.clear()
            fwd.plans.clear()
        for cfwd in _CUDA_FORWARD.values():
            cfwd.table.clear()


# --------------------------------------------------------------------------- one operator
def _dtype_name(t: torch.Tensor) -> str:
    return _DTYPE_NAMES.get(t.dtype) or str(t.dtype).replace("torch.", "")


def workload_of(op: OpSpec, tensors, attrs) -> Workload:
    """Validate the tensors' dtypes and build the workload from their shapes and ``attrs``."""
    first = next(t for t in tensors if t is not None)
    dtype = _dtype_name(first)
    if dtype not in op.dtypes:
        raise InputError(f"{op.name}: '{op.tensors[0].name}' must be {' or '.join(op.dtypes)}, got {dtype}")
    shapes = {}
    for p, t in zip(op.tensors, tensors):
        if t is None:
            continue
        want = p.dtype or dtype
        if _dtype_name(t) != want:
            raise InputError(f"{op.name}: '{p.name}' must be {want}, got {_dtype_name(t)}")
        shapes[p.name] = [int(d) for d in t.shape]
    named = {a.name: v for a, v in zip(op.attrs, attrs)}
    return op.workload(**shapes, **named, dtype=dtype)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    if not t.is_contiguous():
        return t.contiguous()
    if t.data_ptr() % _ALIGN:
        return t.clone()
    return t


def _call_key(args, n: int) -> tuple:
    """What picks a kernel in a call's arguments: each tensor's shape and dtype (None: absent),
    then the attribute values (lists as tuples)."""
    return (*[None if t is None else (t.shape, t.dtype) for t in args[:n]],
            *[tuple(v) if type(v) is list else v for v in args[n:]])


class _Plan:
    """What an eager call with given shapes and attributes needs, resolved once: the kernel's
    function, the exact dtype expected of each tensor (None: absent), constants, output."""

    __slots__ = ("func", "dtypes", "tail", "out_shape", "out_dtype")

    def __init__(self, kern: kernels.Kernel, tensors):
        self.func = kern.func
        self.dtypes = tuple(None if t is None else t.dtype for t in tensors)
        self.tail = kern.constants
        self.out_shape, self.out_dtype = tuple(kern.out_shape), kern.out_dtype


class _Forward:
    """The real (CPU) kernel of one operator: shapes -> compiled kernel table, then a call.

    ``plans`` serves :func:`fast_call` (eager calls needing no gradient): keyed by the caller's
    attribute values and the tensors' shapes, each entry is checked against the call (exact
    ``torch.Tensor`` type, CPU, dtype, contiguous, 64-byte aligned, no gradient needed, no mode
    active) before the kernel runs; anything else takes the general path."""

    def __init__(self, op: OpSpec):
        self.op = op
        self.n = len(op.tensors)
        self.table: dict[tuple, kernels.Kernel] = {}
        self.plans: dict[tuple, _Plan] = {}

    def key(self, args) -> tuple:
        return (_config.target, id(_config.db), *_call_key(args, self.n))

    def kernel(self, args) -> kernels.Kernel:
        key = self.key(args)
        kern = self.table.get(key)
        if kern is None:
            wl = workload_of(self.op, args[: self.n], args[self.n :])
            with _lock:
                kern = self.table[key] = kernel_for(wl, _config.target, _config.db)
        return kern

    def __call__(self, *args):
        return self.run(self.kernel(args), args)

    def run(self, kern: kernels.Kernel, args) -> torch.Tensor:
        ins = [_aligned(t) for t in args[: self.n] if t is not None]
        out = torch.empty(kern.out_shape, dtype=kern.out_dtype)
        kern.func(*ins, *kern.constants, out)
        if _recorders:
            _recorders[-1].append(kern.workload)
        return out

    def slow(self, *args):
        """The native CPU kernel's first call for these shapes (``opsearch::_slow_<name>``): run
        the kernel, then hand the native kernel its plan (``self.table`` keeps the TVM function
        alive for as long as the plan exists: :func:`reset` clears both)."""
        kern = self.kernel(args)
        out = self.run(kern, args)
        if not _recorders:
            _native_set_plan(self.op.name, kern.func.__chandle__(), list(kern.out_shape), kern.out_dtype,
                             list(kern.constants))
        return out

    def fake(self, *args):
        wl = workload_of(self.op, args[: self.n], args[self.n :])
        a = wl.args
        first = next(t for t in args[: self.n] if t is not None)
        return first.new_empty(self.op.output_shape(a), dtype=kernels.torch_dtype(self.op.output_dtype(a)))


class _CudaForward:
    """The CUDA kernel of one operator: CUDA tensors run the workload's kernel for their GPU's
    architecture (``cuda:sm_<major><minor>``; :func:`opsearch.runtime.cuda_kernel.cuda_kernel_for`:
    the best measured record in the configured database, else the default CUDA schedule), on
    the tensors' memory and the current stream."""

    def __init__(self, op: OpSpec):
        self.op = op
        self.n = len(op.tensors)
        self.table: dict[tuple, Any] = {}

    def __call__(self, *args):
        from ..runtime.cuda_kernel import cuda_kernel_for

        tensors = args[: self.n]
        first = next(t for t in tensors if t is not None)
        key = (id(_config.db), first.device, *_call_key(args, self.n))
        kern = self.table.get(key)
        if kern is None:
            wl = workload_of(self.op, tensors, args[self.n:])
            with _lock:
                kern = self.table[key] = cuda_kernel_for(wl, cuda_target(first.device), _config.db)
        out = kern(*[t for t in tensors if t is not None])
        if _recorders:
            _recorders[-1].append(kern.workload)
        return out


def cuda_target(device) -> str:
    """The opsearch target of a CUDA device: ``cuda:sm_<major><minor>`` of its compute capability."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda:sm_{major}{minor}"


def _schema(op: OpSpec, lead: str = "", ret: str = "Tensor") -> str:
    parts = [lead] if lead else []
    parts += [f"Tensor{'?' if p.optional else ''} {p.name}" for p in op.tensors]
    parts += [f"{_ATTR_TYPES[a.kind]} {a.name}" for a in op.attrs]
    return f"({', '.join(parts)}) -> {ret}"


class _Vjp:
    """The PyTorch fallback backward: ``torch.func.vjp`` through ``op.baseline`` (functorch, as plain
    autograd is switched off below the dispatcher's Autograd key where this op runs)."""

    def __init__(self, op: OpSpec):
        self.op = op
        self.n = len(op.tensors)

    def __call__(self, grad, *args):
        tensors, attrs = list(args[: self.n]), args[self.n :]
        a = workload_of(self.op, tensors, attrs).args
        idx = differentiable(self.op, tensors)
        names = [p.name for p in self.op.tensors]

        def f(*diff):
            full = list(tensors)
            for i, v in zip(idx, diff):
                full[i] = v
            return self.op.baseline(a, **{n: t for n, t in zip(names, full) if t is not None})

        with torch.enable_grad():
            _, pullback = torch.func.vjp(f, *[tensors[i].detach() for i in idx])
            return [g.contiguous() for g in pullback(grad)]

    def fake(self, grad, *args):
        tensors = args[: self.n]
        return [torch.empty_like(tensors[i]) for i in differentiable(self.op, tensors)]


# --------------------------------------------------------------------------- autograd
def _autograd_kernel(op: OpSpec, fwd: _Forward, overload):
    """The operator's Autograd-key kernel (what ``torch.library.register_autograd`` would install,
    minus its generic per-call argument walking).

    With a gradient needed it runs an ``autograd.Function`` whose forward redispatches below
    autograd and whose backward is the operator's (see the module docstring). Without one, when
    the only key left below autograd is CPU (no tensor subclass, fake/functional tensor or
    dispatch mode, a CPU tensor), it calls the CPU kernel itself instead of a second dispatch;
    otherwise it redispatches."""
    n = len(op.tensors)
    backward = backward_fn(op)

    class Fn(torch.autograd.Function):  # renamed below: grad_fn shows as <name>Backward
        @staticmethod
        def forward(*args):
            keyset = args[-1]
            with _below_autograd():
                if keyset is None:  # from the native Autograd kernel: dispatch from below autograd
                    return overload(*args[:-1])
                return overload.redispatch(keyset & _after_autograd, *args[:-1])

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs[:n])
            ctx.attrs = list(inputs[n:-1])

        @staticmethod
        def backward(ctx, grad):
            needs = ctx.needs_input_grad[:n]
            grads = backward(list(ctx.saved_tensors), needs, ctx.attrs, grad)
            return (*grads, *([None] * (len(ctx.attrs) + 1)))

    Fn = type(op.name, (Fn,), {})

    if _NATIVE:  # opsearch::_autograd_<name>: the native Autograd kernel found a gradient needed
        return lambda *args: Fn.apply(*args, None)

    def kernel(keyset, *args):
        if _grad_enabled():
            for t in args[:n]:
                if t is not None and t.requires_grad:
                    return Fn.apply(*args, keyset)
        below = keyset & _after_autograd
        if below.remove(_AD_INPLACE_OR_VIEW).highestPriorityTypeId() == _CPU_KEY:  # ADInplaceOrView: a fallthrough here
            return fwd(*args)
        with _below_autograd():
            return overload.redispatch(below, *args)

    return kernel


# --------------------------------------------------------------------------- registration
OPS: dict[str, Any] = {}
_FORWARD: dict[str, _Forward] = {}
_CUDA_FORWARD: dict[str, _CudaForward] = {}
_LIB = torch.library.Library(NAMESPACE, "DEF")
_after_autograd = torch._C._after_autograd_keyset
_below_autograd = torch._C._AutoDispatchBelowAutograd
_CPU_KEY = torch._C.DispatchKey.CPU
_AD_INPLACE_OR_VIEW = torch._C.DispatchKey.ADInplaceOrView
_grad_enabled = torch.is_grad_enabled
_NATIVE = native.load()
if _NATIVE and native.torch_pool_wanted():
    from ..runtime import cache as _cache

    _cache.on_library_load(native.route_parallel_loops)
_native_set_plan = torch.ops.opsearch._native_set_plan if _NATIVE else None


def _register(op: OpSpec) -> None:
    """Define ``opsearch::<name>`` with ``torch.library.Library``: schema, CPU kernel, fake kernel,
    Autograd kernel; and its fallback backward ``opsearch::<name>_vjp`` as a ``custom_op``."""
    fwd, vjp, cuda_fwd = _Forward(op), _Vjp(op), _CudaForward(op)
    _LIB.define(f"{op.name}{_schema(op)}")
    torch.library.register_fake(f"{NAMESPACE}::{op.name}", fwd.fake, lib=_LIB)
    overload = getattr(torch.ops.opsearch, op.name).default
    if _NATIVE:  # C++ CPU and Autograd kernels (opsearch.torch_bridge.native), Python behind them
        _LIB.define(f"_slow_{op.name}{_schema(op)}")
        _LIB.impl(f"_slow_{op.name}", fwd.slow, "CPU")
        _LIB.define(f"_autograd_{op.name}{_schema(op)}")
        _LIB.impl(f"_autograd_{op.name}", _autograd_kernel(op, fwd, overload), "CompositeImplicitAutograd")
        torch.ops.opsearch._native_register(op.name, len(op.tensors))
    else:
        _LIB.impl(op.name, fwd, "CPU")
        _LIB.impl(op.name, _autograd_kernel(op, fwd, overload), "Autograd", with_keyset=True)
    _LIB.impl(op.name, cuda_fwd, "CUDA")
    grad_op = torch.library.custom_op(
        f"{NAMESPACE}::{op.name}_vjp", vjp, mutates_args=(), schema=_schema(op, "Tensor grad", "Tensor[]")
    )
    grad_op.register_fake(vjp.fake)
    OPS[op.name] = overload
    _FORWARD[op.name] = fwd
    _CUDA_FORWARD[op.name] = cuda_fwd


for _op in _ops.all_ops():
    _register(_op)


def op(name: str):
    """The ``torch.ops.opsearch.<name>`` overload packet for operator ``name``."""
    _ops.get(name)  # raises UnknownOperatorError
    return getattr(torch.ops.opsearch, name)


_ATTR_CACHE: dict[tuple, list] = {}


def attr_args(name: str, attrs: dict[str, Any]) -> list:
    """Attributes in schema order and form (pairs as 2-lists), from user values (validated,
    memoised per distinct value tuple)."""
    spec = _ops.get(name)
    raw = tuple([_freeze(attrs.get(a.name, a.default)) for a in spec.attrs])
    try:
        return _ATTR_CACHE[(name, raw)].copy()
    except KeyError:
        pass
    except TypeError:  # unhashable user value: validate without memoising
        return _normalize_attrs(spec, raw)
    out = _normalize_attrs(spec, raw)
    _ATTR_CACHE[(name, raw)] = out
    return out.copy()


def _normalize_attrs(spec: OpSpec, raw: tuple) -> list:
    from ..errors import WorkloadError

    out = []
    for a, v in zip(spec.attrs, raw):
        try:
            v = a.normalize(v)
        except WorkloadError as e:
            raise WorkloadError(f"{spec.name}: {e}") from None
        out.append(list(v) if isinstance(v, tuple) else v)
    return out


def _freeze(v):
    return tuple(v) if type(v) is list else v


_is_compiling = torch.compiler.is_compiling
_function_mode = torch._C._is_torch_function_mode_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_has_torch_function = torch.overrides.has_torch_function


def direct_ok(tensors) -> bool:
    """True when calling the kernel directly is indistinguishable from the dispatcher: eager,
    no tensor needing a gradient, no tensor subclass or torch function/dispatch mode."""
    if torch.is_grad_enabled():
        for t in tensors:
            if t is not None and t.requires_grad:
                return False
    return not (_is_compiling() or _function_mode() or _dispatch_modes() or _has_torch_function(tensors))


# Plain tensors and parameters (nn.Parameter disables __torch_function__: it dispatches as a plain
# tensor), so modules' weights take the fast path too.
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_empty = torch.empty
def fast_call(name: str, tensors: tuple, attrs: tuple):
    """Run operator ``name`` straight into its kernel if a plan for these shapes and attribute
    values exists and every condition of :func:`direct_ok` plus the kernel's input contract
    holds; else None (the caller takes the general path, which makes the plan).

    ``tensors`` in signature order (None for an absent optional one); ``attrs`` the caller's
    attribute values in signature order, as given (unnormalised)."""
    if _is_compiling():  # first: under torch.compile the rest is never traced
        return None
    try:
        plan = _FORWARD[name].plans.get((attrs, *[None if t is None else t.shape for t in tensors]))
    except (TypeError, AttributeError):  # an unhashable attribute value, a non-tensor
        return None
    if plan is None or _recorders or _function_mode() or _dispatch_modes():
        return None
    grad = _grad_enabled()
    args = []
    for t, dt in zip(tensors, plan.dtypes):
        if t is None:
            continue
        if (type(t) not in _PLAIN or t.dtype is not dt or not t.is_cpu or (grad and t.requires_grad)
                or t.data_ptr() % _ALIGN or not t.is_contiguous()):
            return None
        args.append(t)
    out = _empty(plan.out_shape, dtype=plan.out_dtype)
    plan.func(*args, *plan.tail, out)
    return out


def remember_plan(name: str, tensors: tuple, attrs: tuple, checked: list, norm_attrs: list) -> None:
    """Make the plan :func:`fast_call` uses for these shapes and attribute values, after a
    successful direct call: ``checked`` are the tensors after the caller's validation (dtype
    conversions) and ``norm_attrs`` the attributes as :func:`attr_args` gave them."""
    fwd = _FORWARD[name]
    try:
        key = (attrs, *[None if t is None else t.shape for t in tensors])
        hash(key)
    except (TypeError, AttributeError):
        return
    if any(t is not None and type(t) not in _PLAIN for t in checked):
        return
    kern = fwd.kernel([*checked, *norm_attrs])
    with _lock:
        if len(fwd.plans) < 4096:
            fwd.plans[key] = _Plan(kern, checked)


def call(name: str, tensors: list, attrs: list) -> torch.Tensor:
    """Run operator ``name``: straight into its kernel when :func:`direct_ok`, otherwise through
    ``torch.ops.opsearch.<name>`` (autograd, ``torch.compile``, modes)."""
    if direct_ok(tensors):
        return _FORWARD[name](*tensors, *attrs)
    return OPS[name](*tensors, *attrs)
