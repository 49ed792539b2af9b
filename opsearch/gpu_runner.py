"""Measure a CUDA candidate bundle on a GPU machine that has no TVM.

    python -m opsearch.gpu_runner BUNDLE OUT.json [--repeats 30] [--no-baselines] [--no-compile] [--torch-path]

Needs PyTorch (CUDA build), CuPy and the CUDA driver, and this package's pure-Python operator
library (``opsearch.ops``, ``opsearch.bench.baselines``; neither imports TVM). For every
candidate of ``BUNDLE/manifest.json`` (written by ``opsearch.runtime.bundle``): the inputs are
drawn from the bundle's seed by the operator's own sampler, the output is poisoned with NaN
and each launch of the candidate's program runs on the current stream; the output is compared
with the operator's float64 reference (on the GPU) by relative error against the operator's
tolerance; then it is timed with CUDA events around the whole launch program, after a warm-up,
with the L2 cache flushed before each of ``--repeats`` runs (median reported, every run kept).
Also timed in the same run, per workload: the best pure-PyTorch implementation (cuDNN for the
convolutions, ``torch.fft``, unfold/einsum forms: ``opsearch.bench.baselines``) and
``torch.compile`` of it. ``OUT.json`` holds every candidate as a database record (status ok,
wrong_result or run_error with the message) for ``opsearch db import-measurements``, and the
baseline table. ``--torch-path`` first runs each workload's default kernel the way
``opsearch.load(..., target="cuda:...")`` serves it (``opsearch.runtime.cuda_kernel``: the CUDA
driver through ctypes, torch tensors, current stream) and checks its output.

A cubin that the driver refuses (built by a different toolkit) is rebuilt from the bundle's CUDA
source with NVRTC through CuPy. ``Launcher`` is the one piece that touches the GPU: tests run
the runner with a CPU launcher that computes each candidate with the reference. The bundle's
format and its checks live in ``opsearch.runtime.bundle`` (importable without TVM).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .runtime.bundle import BundleError, load_bundle

# The same values as opsearch.db.measurements.RESULTS_KIND and opsearch.db.records.RECORD_SCHEMA,
# spelled here because opsearch.db needs SQLAlchemy, which the GPU machine lacks
# (tests/search/test_gpu_bundle.py imports both and checks they agree).
RESULTS_KIND = "opsearch-cuda-measurements"
RECORD_SCHEMA = 1
L2_FLUSH_BYTES = 256 << 20  # H200's L2 is 50 MB: writing 256 MB evicts it


# ----------------------------------------------------------------------------- launching
class Launcher:
    """Runs a candidate's launch program on the GPU through CuPy (cubin, or NVRTC from source)."""

    device = "cuda"

    def __init__(self, root: str | Path):
        import cupy

        self.cp = cupy
        self.root = Path(root)
        self._modules: dict[str, Any] = {}
        self.rebuilt = 0

    def _module(self, c: dict):
        key = c["cubin"]
        if key not in self._modules:
            try:
                mod = self.cp.RawModule(path=str(self.root / c["cubin"]))
                mod.get_function(c["launches"][0]["kernel"])  # loads it now: a refused cubin fails here
            except Exception:  # noqa: BLE001 - a toolkit/driver mismatch: build the source here
                mod = self.cp.RawModule(code=(self.root / c["source"]).read_text(), options=("--std=c++17",))
                self.rebuilt += 1
            self._modules[key] = mod
        return self._modules[key]

    def bind(self, c: dict, tensors: list, workspaces: list) -> Callable[[], None]:
        """A function that runs every launch of ``c`` in order on these tensors (zero-copy; the
        argument tuples are built once, so a timed call is only the launches)."""
        import numpy as np

        mod = self._module(c)
        cp = self.cp
        arrays = [cp.from_dlpack(t) for t in tensors]
        spaces = [cp.from_dlpack(w) for w in workspaces]
        calls = []
        for ln in c["launches"]:
            args = tuple(arrays[a["param"]] if "param" in a else spaces[a["workspace"]] if "workspace" in a
                         else np.int32(a["int32"]) for a in ln["args"])
            calls.append((mod.get_function(ln["kernel"]), tuple(ln["grid"]), tuple(ln["block"]), args,
                          ln["shared_bytes"]))

        def run() -> None:
            for fn, grid, block, args, shared in calls:
                fn(grid, block, args, shared_mem=shared)

        return run


# ----------------------------------------------------------------------------- measuring
def _torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def _inputs(wl, seed: int, device: str) -> tuple[dict, list]:
    """(float64 inputs by name, kernel argument tensors: inputs in the kernel's dtype + constants)."""
    import torch

    from . import ops

    op, a = ops.get(wl.op), wl.args
    gen = torch.Generator().manual_seed(seed)
    t64 = {p.name: op.sample(a, p, a[p.name], gen, torch.float64) for p in op.tensors if a[p.name] is not None}
    args = [(v.float() if v.is_floating_point() else v).to(device).contiguous() for v in t64.values()]
    consts = [torch.from_numpy(v).to(device).contiguous() for v in op.constants(a).values()]
    return {k: v.to(device) for k, v in t64.items()}, args + consts


def rel_error(y, ref) -> float:
    """||y - ref|| / ||ref|| in float64 (NaN when y holds any NaN)."""
    y, ref = y.double(), ref.double()
    return float((y - ref).norm() / ref.norm().clamp_min(1e-300))


def first_per_workload(m: dict) -> list[dict]:
    """Each workload's first candidate in the bundle (its default schedule), in bundle order."""
    seen, out = set(), []
    for c in m["candidates"]:
        if c["_workload"] not in seen:
            seen.add(c["_workload"])
            out.append(c)
    return out


def matches(out, ref, tolerance: float) -> tuple[bool, str]:
    """(whether ``out`` matches the reference, why not): exact for integer outputs or a zero
    tolerance, else relative error within ``tolerance``."""
    import torch

    if tolerance == 0 or not ref.is_floating_point():
        return torch.equal(out, ref.to(out.dtype)), "output differs from the reference (exact match required)"
    err = rel_error(out, ref)
    return err <= tolerance, f"relative error {err:.2e} exceeds {tolerance:.0e} against the reference"


def time_us(fn: Callable[[], Any], device: str, repeats: int, flush=None, warmup: int = 3) -> list[float]:
    """Per-run microseconds of ``fn``: CUDA events on a GPU (L2 flushed before each run), the
    host clock on a CPU."""
    import torch

    for _ in range(warmup):
        fn()
    out = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            if flush is not None:
                flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) * 1e3)
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e6)
    return out


def _record(c: dict, target: str, status: str, run_us=(), error: str | None = None) -> dict:
    run_us = [float(t) for t in run_us]
    return {"schema": RECORD_SCHEMA, "op": c["op"], "args": c["args"], "target": target, "status": status,
            "mean_us": statistics.fmean(run_us) if run_us else None, "run_us": run_us,
            "module_hash": c["module_hash"], "error": error, "trace": c["trace"], "args_info": c["args_info"],
            "source": "gpu_runner", "label": c.get("label")}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]


def measure_candidates(m: dict, launcher, repeats: int = 30, seed: int | None = None, log=print) -> list[dict]:
    """Check and time every candidate; one record (as a dict) per candidate."""
    import torch

    from . import ops

    device = launcher.device
    seed = m.get("seed", 0) if seed is None else seed
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device) if device == "cuda" else None
    records, refs = [], {}
    for c in m["candidates"]:
        wl = c["_workload"]
        op = ops.get(wl.op)
        try:
            if wl not in refs:  # inputs and reference once per workload (candidates only read them)
                t64, args = _inputs(wl, seed, device)
                refs[wl] = (args, op.reference(wl.args, **t64))
            args, ref = refs[wl]
            out = torch.empty(c["output"]["shape"], dtype=_torch_dtype(c["output"]["dtype"]), device=device)
            spaces = [torch.empty(w["elems"], dtype=_torch_dtype(w["dtype"]), device=device) for w in c["workspaces"]]
            run = launcher.bind(c, [*args, out], spaces)
            if out.is_floating_point():
                out.fill_(float("nan"))
            run()
            if device == "cuda":
                torch.cuda.synchronize()
            ok, why = matches(out, ref, op.tolerance)
            if not ok:
                records.append(_record(c, m["target"], "wrong_result", error=why))
            else:
                records.append(_record(c, m["target"], "ok", time_us(run, device, repeats, flush)))
        except Exception as e:  # noqa: BLE001 - a failing candidate is a result, not the runner's end
            if device == "cuda":
                try:
                    torch.cuda.synchronize()
                except Exception:  # noqa: BLE001 - a sticky launch failure: later candidates will say so
                    pass
            records.append(_record(c, m["target"], "run_error", error=_one_line(e)))
        r = records[-1]
        log(f"{c['op']:<20} {c.get('label', ''):<14} {r['status']:<13} "
            + (f"{statistics.median(r['run_us']):10.1f} us" if r["run_us"] else (r["error"] or "")[:90]))
    return records


def measure_baselines(m: dict, device: str, repeats: int = 30, compile_too: bool = True, seed: int | None = None,
                      log=print) -> list[dict]:
    """The best pure-PyTorch implementation of each workload, eager and under ``torch.compile``."""
    import torch

    from . import ops
    from .bench import baselines

    seed = m.get("seed", 0) if seed is None else seed
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device) if device == "cuda" else None
    rows = []
    for c in first_per_workload(m):
        wl = c["_workload"]
        op, a = ops.get(wl.op), wl.args
        b = baselines.get(wl.op)
        row = {"op": wl.op, "args": c["args"], "method": b.method}
        t64, _ = _inputs(wl, seed, device)
        t32 = {k: (v.float() if v.is_floating_point() else v) for k, v in t64.items()}
        try:
            prepared = b.prepared(a, **t32)
            with torch.no_grad():
                row["eager_rel_error"] = rel_error(b.run(a, **prepared), op.reference(a, **t64))
                row["eager_us"] = time_us(lambda: b.run(a, **prepared), device, repeats, flush)
        except Exception as e:  # noqa: BLE001
            row["eager_error"] = _one_line(e)
        if compile_too and "eager_us" in row:
            try:
                fn = torch.compile(lambda **t: b.run(a, **t))
                with torch.no_grad():
                    t0 = time.perf_counter()
                    fn(**prepared)
                    row["compile_s"] = time.perf_counter() - t0
                    row["compiled_us"] = time_us(lambda: fn(**prepared), device, repeats, flush)
            except Exception as e:  # noqa: BLE001
                row["compiled_error"] = _one_line(e)
        rows.append(row)
        med = {k: statistics.median(row[k]) for k in ("eager_us", "compiled_us") if k in row}
        log(f"baseline {wl.op:<20} eager {med.get('eager_us', float('nan')):10.1f} us   "
            f"compiled {med.get('compiled_us', float('nan')):10.1f} us   {b.method}")
    return rows


def check_torch_path(m: dict, device: str = "cuda", seed: int | None = None, drv=None, log=print) -> list[dict]:
    """The torch path of each workload's first candidate (its default schedule): the kernel that
    ``opsearch.load(..., target="cuda:...")`` and ``torch.ops.opsearch`` serve
    (``opsearch.runtime.cuda_kernel.CudaKernel``, launched through the CUDA driver, not CuPy),
    called with torch tensors on ``device``: once plainly, once with a non-contiguous input and
    once on a side stream; each output, NaN-poisoned first, is checked against the reference."""
    import torch

    from . import ops
    from .runtime.cuda_kernel import from_bundle

    seed = m.get("seed", 0) if seed is None else seed
    rows = []
    for c in first_per_workload(m):
        wl = c["_workload"]
        op = ops.get(wl.op)
        row = {"op": wl.op, "args": c["args"], "label": c.get("label"), "status": "ok", "error": None}
        try:
            t64, args = _inputs(wl, seed, device)
            ref = op.reference(wl.args, **t64)
            k = from_bundle(m, c, drv)
            ins = args[: len(k.inputs)]
            stream = torch.cuda.Stream() if device == "cuda" else None
            strided = [t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() >= 2 and t.shape[-1] > 1
                       and t.shape[-2] > 1 else t for t in ins]
            for what, call_ins, side in (("plain", ins, False), ("non-contiguous input", strided, False),
                                         ("side stream", ins, True)):
                out = torch.full(k.out_shape, float("nan"), dtype=_torch_dtype(k.out_dtype), device=device) \
                    if k.out_dtype.startswith("float") else torch.empty(k.out_shape, dtype=_torch_dtype(k.out_dtype), device=device)
                if side and stream is not None:
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        k(*call_ins, out=out)
                    stream.synchronize()
                else:
                    k(*call_ins, out=out)
                    if device == "cuda":
                        torch.cuda.synchronize()
                ok, why = matches(out, ref, op.tolerance)
                if not ok:
                    row.update(status="wrong_result", error=f"{what}: {why}")
                    break
        except Exception as e:  # noqa: BLE001 - reported per workload
            row.update(status="run_error", error=_one_line(e))
        rows.append(row)
        log(f"torch path  {wl.op:<20} {row['status']:<13} {row['error'] or ''}")
    return rows


def device_info(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, capability=f"sm_{p.major}{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    else:
        info["name"] = "cpu"
    return info


def run_bundle(bundle: str | Path, out: str | Path, launcher=None, repeats: int = 30, baselines: bool = True,
               compile_too: bool = True, torch_path: bool = False, log=print) -> dict:
    """Measure a bundle and write the results file; returns its content. ``torch_path`` also
    checks the torch-facing kernel of each workload first (:func:`check_torch_path`)."""
    m = load_bundle(bundle)
    launcher = launcher or Launcher(m["_root"])
    checked = check_torch_path(m, launcher.device, log=log) if torch_path else None
    started = datetime.now(timezone.utc).isoformat()
    records = measure_candidates(m, launcher, repeats, log=log)
    doc = {"schema": 1, "kind": RESULTS_KIND, "target": m["target"], "bundle_created_at": m.get("created_at"),
           "measured_at": started, "device": device_info(launcher.device), "repeats": repeats,
           "rebuilt_from_source": getattr(launcher, "rebuilt", 0), "records": records, "baselines": []}
    if checked is not None:
        doc["torch_path"] = checked
    Path(out).write_text(json.dumps(doc, indent=1))  # the candidates are kept if the baselines run out of time
    if baselines:
        doc["baselines"] = measure_baselines(m, launcher.device, repeats, compile_too, log=log)
        Path(out).write_text(json.dumps(doc, indent=1))
    return doc


def summary_table(doc: dict) -> str:
    """Markdown: per workload, the best candidate against the best PyTorch eager and compiled."""
    best: dict[str, dict] = {}
    for r in doc["records"]:
        key = json.dumps([r["op"], r["args"]], sort_keys=True)
        if r["status"] == "ok" and (key not in best or statistics.median(r["run_us"]) < best[key]["us"]):
            best[key] = {"us": statistics.median(r["run_us"]), "label": r.get("label")}
    lines = ["| op | args | opsearch µs | candidates ok/all | PyTorch eager µs | torch.compile µs | vs best PyTorch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    ratios = []
    for b in doc["baselines"]:
        key = json.dumps([b["op"], b["args"]], sort_keys=True)
        mine = [r for r in doc["records"] if json.dumps([r["op"], r["args"]], sort_keys=True) == key]
        ours = best.get(key, {}).get("us")
        eager = statistics.median(b["eager_us"]) if "eager_us" in b else None
        comp = statistics.median(b["compiled_us"]) if "compiled_us" in b else None
        torch_best = min(x for x in (eager, comp) if x is not None) if (eager or comp) else None
        ratio = torch_best / ours if ours and torch_best else None
        if ratio:
            ratios.append(ratio)
        f = lambda v: f"{v:,.1f}" if v is not None else "—"  # noqa: E731
        lines.append(f"| {b['op']} | {json.dumps(b['args'], sort_keys=True)} | {f(ours)} | "
                     f"{sum(r['status'] == 'ok' for r in mine)}/{len(mine)} | {f(eager)} | {f(comp)} | "
                     f"{f'{ratio:.2f}x' if ratio else '—'} |")
    if ratios:
        lines.append(f"\ngeo-mean vs the best PyTorch: {math.exp(statistics.fmean(math.log(r) for r in ratios)):.2f}x "
                     f"over {len(ratios)} workloads")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m opsearch.gpu_runner", description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("out")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile of the baselines")
    ap.add_argument("--torch-path", action="store_true",
                    help="first check each workload's default kernel through the torch path (CUDA driver, CUDA tensors)")
    args = ap.parse_args(argv)
    try:
        doc = run_bundle(args.bundle, args.out, repeats=args.repeats, baselines=not args.no_baselines,
                         compile_too=not args.no_compile, torch_path=args.torch_path)
    except BundleError as e:
        print(f"gpu_runner: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"gpu_runner: error: {e} (the runner needs torch with CUDA and CuPy)", file=sys.stderr)
        return 2
    print(summary_table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
