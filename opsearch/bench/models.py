"""Whole models end to end: PyTorch eager, the same model through ``opsearch.optimize``, and
``torch.compile`` of the PyTorch model, timed alternately in one process, with each layer's
time inside the model.

``bench_model(build)`` takes a builder, a function returning ``(model, example_inputs)`` (it may
take ``batch=``), and returns a :class:`ModelBench`: the three sides' median forward latencies,
each leaf module's time inside the eager and the opsearch model (forward hooks: the gap between
their sum and the forward is the code in ``forward`` methods — residual adds, activations called
as functions — plus Python overhead), the per-swap report of ``optimize`` and the outputs'
relative errors against eager. ``opsearch model bench MODULE:FN`` prints it.

The eager side is the best PyTorch can do: opsearch modules the builder's model holds run, on
their PyTorch path, the fastest pure-PyTorch implementation of their operator
(:mod:`opsearch.bench.baselines`, what ``opsearch bench`` races against), not the operator's
reference formulation; layers that ``optimize`` swaps are timed against the PyTorch modules
they replace.

Opsearch kernels called from PyTorch run their parallel loops on PyTorch's own thread pool
(``opsearch.torch_bridge.native``), so the sides can share a process; they still alternate
(eager, opsearch, compiled, eager, ...) with a short pause between sides, and medians are
quoted. Timings on a shared 2-core VM move by 10-20 % between runs: compare ratios.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import inspect
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import OpsearchError

_PAUSE_S = 0.02  # between sides: the other side's pool threads stop spinning


def load_builder(spec: str) -> Callable:
    """``path/to/file.py:fn`` or ``package.module:fn`` -> the function. Raises OpsearchError."""
    mod_name, sep, fn_name = spec.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise OpsearchError(f"model must be MODULE:FUNCTION (e.g. examples/tcn.py:build), got '{spec}'")
    if mod_name.endswith(".py") or "/" in mod_name:
        path = Path(mod_name)
        if not path.is_file():
            raise OpsearchError(f"no such file: {mod_name}")
        sys.path.insert(0, str(path.resolve().parent))  # examples import their neighbours (_common)
        try:
            mspec = importlib.util.spec_from_file_location(f"_opsearch_model_{path.stem}", path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mspec.name] = module  # torch.compile looks the model's globals up by module name
            mspec.loader.exec_module(module)
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise OpsearchError(f"cannot import {mod_name}: {e}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise OpsearchError(f"{mod_name} has no function {fn_name}")
    return fn


@dataclass
class LayerTime:
    name: str
    eager: str  # the module class in the PyTorch model
    opsearch: str  # the module class in the optimized model ("" where optimize made it Identity)
    eager_us: float
    opsearch_us: float | None  # None: not run in the optimized model


@dataclass
class ModelBench:
    name: str
    batch: int | None  # the first input's leading dimension
    eager_ms: float
    opsearch_ms: float
    compiled_ms: float | None
    compile_s: float | None
    opsearch_error: float  # relative error of the output against eager (L2)
    compiled_error: float | None
    eager_leaves_ms: float  # sum of the leaf modules' times inside the model
    opsearch_leaves_ms: float
    layers: list[LayerTime] = field(default_factory=list)
    optimize_report: str = ""
    rounds: int = 0

    @property
    def vs_eager(self) -> float:
        return self.eager_ms / self.opsearch_ms

    @property
    def vs_compiled(self) -> float | None:
        return None if self.compiled_ms is None else self.compiled_ms / self.opsearch_ms

    def to_dict(self) -> dict:
        return dict(asdict(self), vs_eager=self.vs_eager, vs_compiled=self.vs_compiled)


def _as_tuple(inputs) -> tuple:
    import torch

    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def _pytorch_copy(model):
    """A copy of ``model`` on PyTorch's own code: opsearch modules of the builder's model switched
    to their PyTorch path (each has one)."""
    from ..torch_bridge.optimize import use_opsearch

    eager = copy.deepcopy(model)
    use_opsearch(eager, False)
    return eager


def _rel_error(got, want) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def _leaf_times(model, inputs, number: int) -> tuple[dict[str, float], float]:
    """Mean microseconds per forward inside the model of each leaf module, and their sum (ms)."""
    spent: dict[str, float] = {}
    started: dict[str, float] = {}
    hooks = []
    for name, m in model.named_modules():
        if next(m.children(), None) is None and name:
            hooks.append(m.register_forward_pre_hook(lambda mod, a, n=name: started.__setitem__(n, time.perf_counter())))
            hooks.append(m.register_forward_hook(
                lambda mod, a, out, n=name: spent.__setitem__(n, spent.get(n, 0.0) + time.perf_counter() - started[n])))
    try:
        model(*inputs)
        spent.clear()
        for _ in range(number):
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    per = {n: s / number * 1e6 for n, s in spent.items()}
    return per, sum(per.values()) / 1e3


@contextlib.contextmanager
def best_pytorch_paths():
    """Within the block, opsearch modules' PyTorch path runs each operator's fastest pure-PyTorch
    implementation (:mod:`opsearch.bench.baselines`)."""
    from .. import ops
    from ..torch_bridge import nn as onn
    from . import baselines

    saved = dict(onn.PYTORCH_PATHS)
    onn.PYTORCH_PATHS.update({name: baselines.get(name) for name in ops.names()})
    try:
        yield
    finally:
        onn.PYTORCH_PATHS.clear()
        onn.PYTORCH_PATHS.update(saved)


def bench_model(build: Callable, *, name: str = "", batch: int | None = None, target: str = "cpu", db: Any = None,
                tune: bool | int = False, rounds: int = 7, budget_s: float = 3.0, compiled: bool = True,
                progress: Callable[[str], None] | None = None) -> ModelBench:
    """Build the model (``build(batch=batch)`` when given), optimize a copy with opsearch, compile
    another with ``torch.compile`` and time the three side by side; see the module docstring."""
    with best_pytorch_paths():
        return _bench_model(build, name, batch, target, db, tune, rounds, budget_s, compiled, progress)


def _bench_model(build, name, batch, target, db, tune, rounds, budget_s, compiled, progress) -> ModelBench:
    import torch

    from ..torch_bridge.optimize import optimize

    say = progress or (lambda msg: None)
    kwargs = {"batch": batch} if batch is not None else {}
    if kwargs and "batch" not in inspect.signature(build).parameters:
        raise OpsearchError(f"{getattr(build, '__name__', 'the builder')} takes no batch= argument")
    model, inputs = build(**kwargs)
    inputs = _as_tuple(inputs)
    if batch is None and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim():
        batch = int(inputs[0].shape[0])  # the builder's own batch (its first input's leading dim)
    model.eval()
    eager = _pytorch_copy(model)
    with torch.no_grad():
        want = eager(*inputs)
    say("optimizing a copy with opsearch (swaps, kernels, per-layer timing)")
    ours, report = optimize(copy.deepcopy(model), inputs, target=target, db=db, tune=tune)
    ours.eval()
    sides = {"eager": eager, "opsearch": ours}
    compile_s = compiled_error = None
    with torch.no_grad():
        opsearch_error = _rel_error(ours(*inputs), want)
        if compiled:
            say("torch.compile of the PyTorch model (Inductor; the first call compiles)")
            t = time.perf_counter()
            fast = torch.compile(_pytorch_copy(model))
            compiled_error = _rel_error(fast(*inputs), want)
            compile_s = time.perf_counter() - t
            sides["compiled"] = fast

        def once(m) -> float:
            t = time.perf_counter()
            m(*inputs)
            return time.perf_counter() - t

        for m in sides.values():  # warm-up
            once(m)
        slowest = max(min(once(m) for _ in range(3)) for m in sides.values())
        number = max(1, int(budget_s / (len(sides) * rounds) / max(slowest, 1e-6)))
        say(f"timing {', '.join(sides)}: {rounds} alternating rounds of {number} forwards each")
        samples: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(rounds):
            for key, m in sides.items():
                time.sleep(_PAUSE_S)
                t = time.perf_counter()
                for _ in range(number):
                    m(*inputs)
                samples[key].append((time.perf_counter() - t) / number * 1e3)
        say("each layer's time inside the model (forward hooks)")
        eager_layers, eager_sum = _leaf_times(eager, inputs, number * 2)
        ours_layers, ours_sum = _leaf_times(ours, inputs, number * 2)
    mods = dict(ours.named_modules())
    layers = [LayerTime(n, type(m).__name__, type(mods[n]).__name__ if n in mods else "", us, ours_layers.get(n))
              for n, m in eager.named_modules() if n in eager_layers for us in [eager_layers[n]]]
    med = {k: statistics.median(v) for k, v in samples.items()}
    return ModelBench(name or getattr(build, "__qualname__", "model"), batch, med["eager"], med["opsearch"],
                      med.get("compiled"), compile_s, opsearch_error, compiled_error, eager_sum, ours_sum, layers,
                      str(report), rounds)
