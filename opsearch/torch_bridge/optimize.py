"""Plug opsearch kernels into a PyTorch model (``opsearch.optimize``) or load one (``opsearch.load``).

``optimize(model, example_inputs)`` swaps, in place, the layers opsearch runs better for
modules that share their parameters (no copies):

- ``nn.Conv2d`` with a dilation > 1 on some axis → :class:`opsearch.nn.DilatedConv2d`;
- ``nn.Conv1d`` (any dilation, the dilation-1 layers of a TCN included) with stride 1, groups 1
  and 'same' padding ((K-1)·d/2, K odd) → ``DilatedConv1d(causal=False)``;
  ``nn.ConstantPad1d(((K-1)·d, 0), 0)`` directly followed by such a conv with padding 0 in an
  ``nn.Sequential`` → ``DilatedConv1d(causal=True)`` (the pad becomes ``nn.Identity``). Any other
  Conv1d is left alone.

Then it switches every opsearch module to its kernels (``use_opsearch = True``), runs the model
once on ``example_inputs`` (in eval mode, restored afterwards) with hooks that capture each
module's inputs and workloads, times each module both ways on those inputs (alternating runs in
this process, median; indicative only — for publishable numbers time each side in its own
process) and returns ``(model, report)``. A swap whose module ran slower than the PyTorch layers
it replaced is undone (the original modules go back; ``keep_slower=True`` keeps every swap), so
optimizing never makes a layer slower than PyTorch on this machine, as measured: an untuned
workload's default schedule often is (Triton's autotuner and TVM's own runtime likewise keep
only what they timed faster).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .. import ops as _ops
from ..errors import TargetError
from ..ops.spec import Workload
from ..runtime.cuda_kernel import CudaKernel
from ..targets import resolve
from . import library
from . import nn as onn


@dataclass(frozen=True)
class ModuleReport:
    """One opsearch module of an optimised model."""

    name: str
    module: str  # class name
    swapped_from: str | None  # original class when optimize() replaced it
    workloads: tuple[str, ...]  # Workload.short() of each kernel the module ran
    schedule: str  # where the kernels came from: "tuned (...)", "nearest tuned workload (...)", "default schedule"
    kernel_ms: float  # median forward latency on the example inputs, opsearch kernels
    pytorch_ms: float  # the same with use_opsearch=False
    undone: str = ""  # why the swap was undone ("" while it stands)

    @property
    def kept(self) -> bool:
        return not self.undone

    @property
    def speedup(self) -> float:
        return self.pytorch_ms / self.kernel_ms if self.kernel_ms else float("nan")


@dataclass
class OptimizeReport:
    target: str
    modules: list[ModuleReport] = field(default_factory=list)
    # the whole model's median forward (ms) with the swaps that passed the per-module check, and
    # with none (None: no swap to check)
    model_ms: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {"target": self.target, "model_ms": self.model_ms,
                "modules": [dict(asdict(m), speedup=m.speedup, kept=m.kept) for m in self.modules]}

    def __str__(self) -> str:
        rows = [f"opsearch.optimize on {self.target}: {len(self.modules)} module(s)"]
        for m in self.modules:
            origin = f" (was {m.swapped_from})" if m.swapped_from else ""
            undone = "" if m.kept else f"; {m.undone}, kept {m.swapped_from}"
            rows.append(
                f"  {m.name or '<root>'}: {m.module}{origin}, {m.schedule}, {m.kernel_ms:.3f} ms vs PyTorch "
                f"{m.pytorch_ms:.3f} ms ({m.speedup:.2f}x{undone}) [{'; '.join(m.workloads)}]"
            )
        if self.model_ms:
            on, off = self.model_ms
            slower = any(m.undone == _MODEL_SLOWER for m in self.modules)
            verdict = "slower: every swap undone" if slower else "kept"
            rows.append(f"  the whole model: {on:.3f} ms with the swaps, {off:.3f} ms without ({verdict})")
        return "\n".join(rows)


# --------------------------------------------------------------------------- swapping
def _cpu_fp32(conv: nn.Module) -> bool:
    return conv.weight.dtype == torch.float32 and conv.weight.device.type == "cpu"


def _dilated(conv: nn.Module) -> bool:
    return any(d > 1 for d in conv.dilation) and _cpu_fp32(conv)


def _same_1d(conv: nn.Conv1d, padding) -> bool:
    (k,), (d,) = conv.kernel_size, conv.dilation
    want = (k - 1) * d // 2
    same = padding == "same" or (not isinstance(padding, str) and tuple(padding) == (want,))
    return k % 2 == 1 and same


def _plain_1d(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv1d and _cpu_fp32(conv) and conv.stride == (1,) and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _conv1d_swap(conv: nn.Conv1d, causal: bool) -> onn.DilatedConv1d:
    m = onn.DilatedConv1d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.dilation[0], causal,
                          conv.bias is not None, device="meta")
    m.weight, m.bias = conv.weight, conv.bias
    return m.train(conv.training)


def _replacements(model: nn.Module) -> dict[str, dict[str, nn.Module]]:
    """Swaps, by the qualified name of the opsearch module each makes: {qualified name: new
    module} of every module the swap replaces (a causal conv's pad becomes ``nn.Identity``)."""
    out: dict[str, dict[str, nn.Module]] = {}
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d and _dilated(m):
            out[name] = {name: onn.DilatedConv2d.from_conv(m)}
        elif _plain_1d(m) and _same_1d(m, m.padding):
            out[name] = {name: _conv1d_swap(m, causal=False)}
        elif isinstance(m, nn.Sequential):
            kids = list(m.named_children())
            for (pn, pad), (cn, conv) in zip(kids, kids[1:]):
                full = f"{name}.{cn}" if name else cn
                if isinstance(pad, nn.ConstantPad1d) and _plain_1d(conv) and conv.padding == (0,) and full not in out:
                    total = (conv.kernel_size[0] - 1) * conv.dilation[0]
                    if tuple(pad.padding) == (total, 0) and pad.value == 0:
                        out[full] = {f"{name}.{pn}" if name else pn: nn.Identity(), full: _conv1d_swap(conv, causal=True)}
    return out


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# --------------------------------------------------------------------------- measuring
def _median_ms(fn, budget_s: float = 0.15, rounds: int = 5) -> list[float]:
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-6)
    number = max(1, min(1000, int(budget_s / rounds / once)))
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - t) / number * 1e3)
    return out


_SETTLE_S = 0.02


def _time_both(module: nn.Module, args, kwargs) -> tuple[float, float]:
    """Median forward latency (ms) with opsearch kernels and with PyTorch, alternating."""
    ours, theirs = [], []
    with torch.no_grad():
        for _ in range(3):
            for flag, acc in ((False, theirs), (True, ours)):
                module.use_opsearch = flag
                time.sleep(_SETTLE_S)  # let the other runtime's worker threads stop spinning
                acc += _median_ms(lambda: module(*args, **kwargs), rounds=2)
    return statistics.median(ours), statistics.median(theirs)


def _capture(model: nn.Module, example_inputs, names: dict[str, nn.Module]):
    """Run the model once; per opsearch module: its first inputs and the workloads it ran."""
    seen: dict[str, tuple] = {}
    wls: dict[str, list[Workload]] = {}
    hooks = []
    with library.recording() as rec:
        for name, m in names.items():
            def pre(mod, args, kwargs, name=name):
                seen.setdefault(name, (args, kwargs, len(rec)))

            def post(mod, args, kwargs, out, name=name):
                wls.setdefault(name, rec[seen[name][2] :])

            hooks.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            hooks.append(m.register_forward_hook(post, with_kwargs=True))
        try:
            with torch.no_grad():
                model(*example_inputs)
        finally:
            for h in hooks:
                h.remove()
    return seen, wls


def optimize(model: nn.Module, example_inputs, target: str = "cpu", db: Any = None, tune: bool | int = False,
             keep_slower: bool = False):
    """Swap supported layers for opsearch modules (sharing parameters, in place), route every
    opsearch module to kernels for ``target`` and report on each.

    ``example_inputs``: a tuple of positional arguments (a single tensor is accepted). ``db`` is
    passed to :func:`opsearch.torch_bridge.library.kernel_for`. ``tune``: False, True (64 trials per
    workload) or a trial budget per workload: workloads without a tuned record are tuned into
    ``db`` first. A swap slower than PyTorch on the example inputs is undone unless
    ``keep_slower``. Returns ``(model, OptimizeReport)``. Raises :class:`TargetError` for a
    non-CPU target.
    """
    spec = resolve(target)
    if spec.kind != "llvm":
        raise TargetError(f"opsearch.optimize runs kernels on the CPU; target '{spec.name}' is not a CPU target")
    library.configure(target, db)
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    origin: dict[str, str] = {}
    undo: dict[str, dict[str, nn.Module]] = {}  # swap -> the modules it replaced
    for name, group in _replacements(model).items():
        origin[name] = type(model.get_submodule(name)).__name__
        undo[name] = {n: model.get_submodule(n) for n in group}
        for n, new in group.items():
            _set(model, n, new)
    mods = {n: m for n, m in model.named_modules() if isinstance(m, onn.OpsearchModule)}
    for m in mods.values():
        m.use_opsearch = True
    modes = {m: m.training for m in model.modules()}
    model.eval()  # measuring must not update batch-norm statistics
    try:
        if tune:
            _tune_missing(model, example_inputs, mods, target, db, 64 if tune is True else int(tune))
        report = _measure(model, example_inputs, mods, origin, spec.name, target, db)
        if not keep_slower:
            _undo_slower(model, example_inputs, report, mods, undo)
    finally:
        for m, training in modes.items():
            m.training = training
    return model, report


# The whole-model check undoes the swaps only when the model is slower with them by more than this
# share: on these VMs both sides of one check moved together by 30% in a slow spell (2.38 against
# 2.37 ms, swaps that run the model in 1.0 ms otherwise), and a tie must not cost the speedup.
MODEL_TOLERANCE = 0.03
_MODEL_SLOWER = "the model ran slower with the swaps"


def _undo_slower(model, example_inputs, report: "OptimizeReport", mods, undo) -> None:
    """Undo each swap whose module timed slower than the PyTorch layers it replaced; then time the
    whole model with the remaining swaps and without, and undo them all if the model is slower
    with them. A module alone can time faster than in its model: in a batch-32 TCN, oneDNN's
    conv1d on a freshly padded input timed 5.5 ms alone against 0.75 ms on a reused one, so the
    per-module check kept default-schedule layers that made the model 2x slower."""
    def undo_swap(i: int, why: str) -> None:
        report.modules[i] = replace(report.modules[i], undone=why)
        for n, old in undo[report.modules[i].name].items():
            _set(model, n, old)

    for i, row in enumerate(report.modules):
        if row.name in undo and row.kernel_ms > row.pytorch_ms:
            undo_swap(i, "slower than PyTorch here")
    kept = [i for i, row in enumerate(report.modules) if row.name in undo and row.kept]
    if not kept:
        return
    swapped = [mods[report.modules[i].name] for i in kept]
    on, off = _time_model(model, example_inputs, swapped)
    report.model_ms = (on, off)
    if on > off * (1 + MODEL_TOLERANCE):
        for i in kept:
            undo_swap(i, _MODEL_SLOWER)


def _time_model(model, example_inputs, swapped, rounds: int = 5, budget_s: float = 1.5) -> tuple[float, float]:
    """Median forward latency (ms) of the whole model with the ``swapped`` modules on opsearch
    kernels and on PyTorch, alternating for ``rounds`` rounds within about ``budget_s``; leaves
    them on opsearch kernels."""
    on, off = [], []
    try:
        with torch.no_grad():
            for _ in range(rounds):
                for flag, acc in ((False, off), (True, on)):
                    for m in swapped:
                        m.use_opsearch = flag
                    time.sleep(_SETTLE_S)  # let the other runtime's worker threads go idle
                    acc += _median_ms(lambda: model(*example_inputs), budget_s=budget_s / (2 * rounds), rounds=1)
    finally:
        for m in swapped:
            m.use_opsearch = True
    return statistics.median(on), statistics.median(off)


def _tune_missing(model, example_inputs, mods, target, db, budget: int) -> None:
    """Tune every workload the model runs that has no tuned record yet, then re-pick kernels."""
    from ..search import tune

    _, wls = _capture(model, example_inputs, mods)
    ran = list(dict.fromkeys(wl for ws in wls.values() for wl in ws))
    missing = [wl for wl in ran if not library.schedule_source(library.kernel_for(wl, target, db)).startswith("tuned")]
    if missing:
        tune(missing, target, db, trials=budget * len(missing), trials_per_workload=budget)
        library.reset()


def _measure(model, example_inputs, mods, origin, target_name, target, db) -> "OptimizeReport":
    seen, wls = _capture(model, example_inputs, mods)
    report = OptimizeReport(target_name)
    for name, m in mods.items():
        if name not in seen:
            continue  # not reached by the example inputs
        args, kwargs, _ = seen[name]
        ours, theirs = _time_both(m, args, kwargs)
        ran = wls.get(name, [])
        kern = [library.kernel_for(wl, target, db) for wl in ran]
        sources = sorted({library.schedule_source(k) for k in kern}) or ["no kernel ran"]
        report.modules.append(ModuleReport(name, type(m).__name__, origin.get(name), tuple(w.short() for w in ran),
                                           ", ".join(sources), ours, theirs))
    return report


def use_opsearch(model: nn.Module, flag: bool) -> None:
    """Route every opsearch module of ``model`` to opsearch kernels (True) or PyTorch (False)."""
    for m in model.modules():
        if isinstance(m, onn.OpsearchModule):
            m.use_opsearch = flag


def compare_model(model: nn.Module, *inputs, rounds: int = 7, budget_s: float = 3.0) -> tuple[float, float, float]:
    """(relative error, opsearch ms, PyTorch ms) of ``model(*inputs)`` with its opsearch modules
    on and off: alternating runs, medians (:func:`_time_model`); leaves the modules on."""
    with torch.no_grad():
        use_opsearch(model, False)
        want = model(*inputs)
        use_opsearch(model, True)
        got = model(*inputs)  # compiles (or loads from the disk cache) every kernel once
    err = float((got - want).norm() / want.norm())
    mods = [m for m in model.modules() if isinstance(m, onn.OpsearchModule)]
    ours, theirs = _time_model(model, inputs, mods, rounds=rounds, budget_s=budget_s)
    return err, ours, theirs


# --------------------------------------------------------------------------- load
class LoadedKernel:
    """A compiled kernel for one workload, called with torch tensors in signature order
    (``f(x, weight)``; absent optional tensors omitted): CPU tensors for a CPU target, CUDA
    tensors for a CUDA one (``device`` says which; the output is on the inputs' device, written
    on the current stream). Inference only: no autograd — use ``opsearch.functional`` or
    ``opsearch.nn`` to train."""

    def __init__(self, wl: Workload, kernel):
        self.workload, self.kernel = wl, kernel
        op, a = _ops.get(wl.op), wl.args
        self._params = [(p.name, tuple(a[p.name])) for p in op.tensors if a[p.name] is not None]
        self.schedule = library.schedule_source(kernel)
        self.device = "cuda" if isinstance(kernel, CudaKernel) else "cpu"

    def __repr__(self) -> str:
        return f"LoadedKernel({self.workload.op}: {self.workload.short()}, {self.schedule})"

    def __call__(self, *tensors: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        from ..errors import InputError

        if self.device == "cuda":
            return self.kernel(*tensors, out=out)  # checks count, device, shapes and dtypes itself
        if len(tensors) != len(self._params):
            names = ", ".join(n for n, _ in self._params)
            raise InputError(f"{self.workload.op}: expected {len(self._params)} tensors ({names}), got {len(tensors)}")
        ins = []
        for (name, shape), t in zip(self._params, tensors):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or tuple(t.shape) != shape:
                got = f"{list(t.shape)} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(f"{self.workload.op}: '{name}' must be a CPU tensor of shape {list(shape)}, got {got}")
            ins.append(library._aligned(t))
        return self.kernel(*ins, out=out)


def load(op: str, target: str = "cpu", db: Any = None, **workload) -> LoadedKernel:
    """The kernel for one workload as a torch-callable. CPU targets: ``library.kernel_for`` (the
    best record, a nearby workload's, or the default schedule, from the disk cache when present).
    CUDA targets (``cuda:sm_90``): the best measured record for that target, else the default
    CUDA schedule, compiled with nvcc (``opsearch.runtime.cuda_kernel``), called with CUDA tensors.

    >>> f = load("dilated_conv2d", x=(1, 8, 16, 16), weight=(8, 8, 3, 3), padding=2, dilation=2)  # doctest: +SKIP
    >>> y = f(x, w)  # doctest: +SKIP
    """
    spec = resolve(target)
    if spec.kind not in ("llvm", "cuda"):
        raise TargetError(f"opsearch.load serves CPU (llvm) and CUDA targets, not '{spec.name}'")
    wl = _ops.get(op).workload(**workload)
    if spec.kind == "cuda":
        from ..runtime.cuda_kernel import cuda_kernel_for

        return LoadedKernel(wl, cuda_kernel_for(wl, spec.name, db))
    return LoadedKernel(wl, library.kernel_for(wl, target, db))
