"""Side-by-side timing of opsearch kernels and PyTorch, each side in its own process.

TVM's thread pool keeps spinning after a call and disturbs timings taken right after it in the
same process, so every side runs in its own worker process (``python -m opsearch.bench.suite SIDE``),
alternating sides over rounds, and medians are reported. Workers read workload keys on stdin and
print one JSON object per workload.

:func:`run_suite` is the ``opsearch bench`` runner: per round, one process each for the best
pure-PyTorch implementations (``opsearch.bench.baselines``, after the machine's fp32 GEMM peak), TVM's
default schedules, the database's tuned records and, given a database of stock MetaSchedule's
records (``opsearch tune --tuner stock``), stock's best; every output is checked against the
operator's reference before it is timed.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from .. import ops
from ..ops import sample_inputs
from ..ops.spec import Workload


def time_schedules(wl: Workload, traces: dict, target: str = "cpu", rounds: int = 5) -> dict[str, float]:
    """Median latency (µs) of several schedules (name -> trace JSON) of one workload, built and
    timed in this process, alternating between them for ``rounds`` rounds."""
    from ..runtime.kernels import time_traces

    samples, errors = time_traces(wl, traces, target, rounds)
    if errors:
        name, msg = next(iter(errors.items()))
        raise RuntimeError(f"schedule {name} of {wl.op} does not build: {msg}")
    return {name: statistics.median(v) for name, v in samples.items()}


def time_torch_ms(fn, *args, min_ms: float = 50.0, repeat: int = 5) -> float:
    """Median per-call latency of ``fn(*args)`` over ``repeat`` batches of at least ``min_ms``."""
    fn(*args)
    t0 = time.perf_counter()
    fn(*args)
    once = max(time.perf_counter() - t0, 1e-6)
    number = max(1, int(min_ms / 1e3 / once))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        samples.append((time.perf_counter() - t0) / number * 1e3)
    return statistics.median(samples)


def _eager_worker(keys: list[str]) -> None:
    """One process timing each workload's PyTorch eager reference implementation (``op.baseline``,
    the "torch us" column of ``opsearch tune``'s closing table)."""
    import torch

    from ..targets import host_cores

    torch.set_num_threads(host_cores())
    for key in keys:
        d = json.loads(key)
        op = ops.get(d["op"])
        wl = op.workload(**d["args"])
        t = sample_inputs(wl)
        with torch.no_grad():
            ms = time_torch_ms(lambda: op.baseline(wl.args, **t))
        print(json.dumps({"key": key, "ms": ms}), flush=True)


def run_eager_worker(keys: list[str]) -> dict[str, dict]:
    """:func:`_eager_worker` in its own process: workload key -> {"ms": ...}."""
    proc = subprocess.run([sys.executable, "-m", "opsearch.bench.suite", "torch"], input="\n".join(keys),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"torch benchmark worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return {r["key"]: r for r in map(json.loads, proc.stdout.splitlines())}


def example_workloads(names: list[str] | None = None) -> list[tuple[str, Workload]]:
    """Every example workload of the named operators (all operators by default)."""
    specs = [ops.get(n) for n in names] if names else ops.all_ops()
    return [(ex, op.example(ex)) for op in specs for ex in op.examples]


# ----------------------------------------------------------------------------- the bench suite
SUITE_SIDES = ("pytorch", "tvm-default", "opsearch-tuned")
STOCK = "stock-metaschedule"  # a fourth side when a database of stock MetaSchedule's records is given
PEAK_N = 2048  # fp32 GEMM size of the peak measurement


def _check(op, wl: Workload, t: dict, y) -> float:
    """||y - ref|| / ||ref|| against the float64 reference on the same inputs."""
    ref = op.reference(wl.args, **{n: v.double() if v.is_floating_point() else v for n, v in t.items()})
    ref = ref.double()
    return float((y.double() - ref).norm() / ref.norm())


PEAK_METHOD = (f"fastest of an fp32 {PEAK_N}\u00b3 torch.mm (BLAS) and an fp32 3x3 F.conv2d of 256 channels "
               "on 56x56 (oneDNN), best of 5 batches each")


def _measure_peak() -> dict:
    """The machine's measured fp32 peak: the faster of PyTorch's two dense engines. The BLAS
    behind torch.mm can take a slower code path on some CPUs (on an AMD znver4 VM: 181 GFLOP/s,
    while oneDNN's 3x3 convolutions ran at 214), so a large 3x3 convolution is timed too."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(PEAK_N, PEAK_N, generator=gen)
    b = torch.randn(PEAK_N, PEAK_N, generator=gen)
    x = torch.randn(1, 256, 56, 56, generator=gen)
    w = torch.randn(256, 256, 3, 3, generator=gen)
    engines = {"torch.mm": (lambda: torch.mm(a, b), 2 * PEAK_N**3),
               "conv3x3": (lambda: F.conv2d(x, w, padding=1), 2 * 256 * 256 * 9 * 56 * 56)}
    gflops = {}
    for name, (fn, flops) in engines.items():
        fn()
        best = math.inf
        for _ in range(5):  # a peak is a best case: the fastest of five batches of >= 100 ms
            t0, calls = time.perf_counter(), 0
            while time.perf_counter() - t0 < 0.1:
                fn()
                calls += 1
            best = min(best, (time.perf_counter() - t0) / calls * 1e3)
        gflops[name] = flops / best / 1e6
    engine = max(gflops, key=gflops.get)
    return {"peak": True, "gflops": gflops[engine], "engine": engine, "gflops_by_engine": gflops}


def _suite_one(side: str, key: str, opts: dict, cache: dict) -> dict:
    import torch

    d = json.loads(key)
    op = ops.get(d["op"])
    wl = op.workload(**d["args"])
    t = sample_inputs(wl)
    out: dict = {"key": key}
    if side == "pytorch":
        from . import baselines

        b = baselines.get(op.name)
        out["method"] = b.method
        with torch.no_grad():
            prepared = b.prepared(wl.args, **t)
            out["rel_error"] = _check(op, wl, t, b.run(wl.args, **prepared))
            out["ms"] = time_torch_ms(lambda: b.run(wl.args, **prepared), repeat=opts.get("repeat", 5))
        return out
    if side == "tvm-default":
        from ..runtime import kernels

        k = kernels.default_kernel(wl, opts["target"])
    else:  # opsearch-tuned or stock-metaschedule: a database's best record, rebuilt from its trace
        from ..runtime.loading import kernel_from_record

        url_key = "stock_db" if side == STOCK else "db"
        if url_key not in cache:
            from .. import db as dbmod

            cache[url_key] = dbmod.connect(opts.get(url_key))
        # stock's column is stock's records alone: never the schedules shipped with opsearch
        rec = cache[url_key].best(wl, opts["target"], shipped=side != STOCK)
        if rec is None:
            out["untuned"] = True
            return out
        out.update(record_id=rec.id, record_source=rec.source, record_us=rec.mean_us)
        k = kernel_from_record(rec, wl, opts["target"])
        if side != STOCK:  # what a user is served: another CPU's record, or a short search's, only if faster than the default here
            from ..runtime.loading import check_record
            from ..targets import resolve

            spec = resolve(opts["target"])
            checked, lost = check_record(rec, k, wl, spec, cache[url_key])
            if checked is None:
                from ..runtime import kernels

                k, out["default_kept"] = kernels.default_kernel(wl, spec.name), lost
    out["rel_error"] = _check(op, wl, t, k(*t.values()))
    out["ms"] = statistics.median(k.time_ms(*t.values(), number=1, repeat=max(3, opts.get("repeat", 5) + 2),
                                            min_repeat_ms=50))
    return out


def _suite_worker(side: str, keys: list[str], opts: dict) -> None:
    """One bench process: one of :data:`SUITE_SIDES` over ``keys`` (the PyTorch side measures the
    GEMM peak first); a workload that fails prints its error instead of a time, the others still run."""
    import torch

    torch.set_num_threads(opts["threads"])
    if side == "pytorch":
        print(json.dumps(_measure_peak()), flush=True)
    cache: dict = {}
    for key in keys:
        try:
            out = _suite_one(side, key, opts, cache)
        except Exception as e:  # noqa: BLE001 - one broken workload must not hide the others
            msg = str(e).strip().splitlines()
            out = {"key": key, "error": f"{type(e).__name__}: {msg[-1] if msg else ''}"[:300]}
        print(json.dumps(out), flush=True)


def run_suite_worker(side: str, keys: list[str], opts: dict) -> dict[str, dict]:
    """Run one suite worker process; a crash (e.g. a segfaulting kernel) marks the workloads it
    did not report as failed instead of aborting the suite."""
    env = dict(os.environ, TVM_NUM_THREADS=str(opts["threads"]), OMP_NUM_THREADS=str(opts["threads"]))
    proc = subprocess.run([sys.executable, "-m", "opsearch.bench.suite", side, json.dumps(opts)], input="\n".join(keys),
                          capture_output=True, text=True, env=env)
    got = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            got[r.get("key", "peak")] = r
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1][:300]
        for key in keys:
            got.setdefault(key, {"key": key, "error": f"{side} worker died: {tail}"})
    return got


@dataclass(frozen=True)
class Measurement:
    """One implementation on one workload: median latency over rounds, or why there is none."""

    us: float | None = None
    rel_error: float | None = None
    ok: bool = False  # measured and matching the reference
    note: str = ""  # method, record, "untuned", or the error


@dataclass
class SuiteRow:
    example: str
    workload: Workload
    flops: int
    results: dict[str, Measurement]


@dataclass
class Suite:
    target: str
    threads: int
    rounds: int
    peak_gflops: float | None
    rows: list[SuiteRow]
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and the end

    def gflops(self, row: SuiteRow, impl: str) -> float | None:
        m = row.results.get(impl)
        return row.flops / m.us / 1e3 if m and m.ok else None

    def speedup(self, row: SuiteRow, impl: str) -> float | None:
        m, base = row.results.get(impl), row.results.get("pytorch")
        return base.us / m.us if m and m.ok and base and base.ok else None

    def headline(self, row: SuiteRow) -> str | None:
        """The implementation the summary counts: tuned when there is a tuned record, else default."""
        for impl in ("opsearch-tuned", "tvm-default"):
            if self.speedup(row, impl) is not None:
                return impl
        return None

    def geomean_speedup(self, impl: str | None = None) -> tuple[float | None, int]:
        """Geometric-mean speedup over PyTorch of ``impl`` (the headline one by default), and over
        how many workloads."""
        xs = [self.speedup(r, impl or self.headline(r)) for r in self.rows if (impl or self.headline(r))]
        xs = [x for x in xs if x]
        return (math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None), len(xs)


def geomean_ratio(suite: "Suite", slower: str, faster: str) -> tuple[float | None, int]:
    """Geometric mean of ``slower``'s latency over ``faster``'s, on the workloads both measured
    (e.g. ``stock-metaschedule`` over ``opsearch-tuned``: above 1 when ours is faster)."""
    xs = [r.results[slower].us / r.results[faster].us for r in suite.rows
          if r.results.get(slower, Measurement()).ok and r.results.get(faster, Measurement()).ok]
    return (math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None), len(xs)


def _merge(runs: list[dict], key: str, tolerance: float) -> Measurement:
    rs = [r[key] for r in runs if key in r]
    if not rs:
        return Measurement(note="not run")
    errors = [r["error"] for r in rs if "error" in r]
    if errors:
        return Measurement(note=errors[0])
    if any(r.get("untuned") for r in rs):
        return Measurement(note="untuned")
    err = max(r["rel_error"] for r in rs)
    us = statistics.median(r["ms"] for r in rs) * 1e3
    note = rs[0].get("method") or ""
    if not note and "record_id" in rs[0]:  # shipped records have no database id
        rid, src = rs[0]["record_id"], rs[0]["record_source"]
        note = f"record {rid} ({src})" if rid is not None else f"{src} record ({rs[0]['record_us']:.1f} us when tuned)"
        if rs[0].get("default_kept"):
            note = f"default schedule, {rs[0]['default_kept']} ({note})"
    if not err <= tolerance:  # NaN fails too
        return Measurement(us, err, False, f"WRONG: rel. error {err:.1e} > {tolerance:g}")
    return Measurement(us, err, True, note)


def run_suite(workloads: list[tuple[str, Workload]], target: str, db, *, rounds: int = 1, threads: int = 2,
              db_url: str | None = None, store: bool = True, progress=None, stock_db=None,
              stock_db_url: str | None = None) -> Suite:
    """Time every ``(example, workload)`` as PyTorch, TVM default and opsearch tuned, each side in
    its own process per round (sides alternate), plus the fp32 GEMM peak (in the PyTorch process,
    which never loads TVM); medians over rounds.

    ``db`` (a :class:`~opsearch.db.Database`) supplies the tuned records (the workers reopen it
    from ``db_url``), and receives every verified latency as a baseline (``pytorch``,
    ``tvm-default``, ``opsearch-tuned``, ``stock-metaschedule``; ``sgemm-peak`` is the latency the
    workload's FLOPs would take at the measured GEMM rate) unless ``store`` is false.
    ``stock_db`` (reopened from ``stock_db_url`` by its worker) holds stock MetaSchedule's records
    (``opsearch tune --tuner stock``): its best record of each workload is a fourth timed side.
    Without it, the stock column shows a ``stock-metaschedule`` baseline already in ``db``.
    """
    say = progress or (lambda msg: None)
    load_start = os.getloadavg()[0]
    keys = [wl.key() for _, wl in workloads]
    tuned_keys = [wl.key() for _, wl in workloads if db.best(wl, target) is not None]
    stock_keys = [wl.key() for _, wl in workloads
                  if stock_db is not None and stock_db.best(wl, target, shipped=False) is not None]
    opts = {"target": target, "threads": threads, "db": db_url, "stock_db": stock_db_url}
    sides = SUITE_SIDES + ((STOCK,) if stock_db is not None else ())
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in runs:
            ks = {"opsearch-tuned": tuned_keys, STOCK: stock_keys}.get(side, keys)
            if not ks:
                continue
            say(f"round {r + 1}/{rounds}: {side}{' (and the GEMM peak)' if side == 'pytorch' else ''}, "
                f"{len(ks)} workload(s) in one process")
            runs[side].append(run_suite_worker(side, ks, opts))
    peaks = [p["peak"]["gflops"] for p in runs["pytorch"] if "gflops" in p.get("peak", {})]
    peak = statistics.median(peaks) if peaks else None
    rows = []
    for name, wl in workloads:
        op = ops.get(wl.op)
        key = wl.key()
        res = {side: _merge(runs[side], key, op.tolerance) for side in SUITE_SIDES}
        if key not in tuned_keys:
            res["opsearch-tuned"] = Measurement(note="untuned")
        if stock_db is not None:
            res[STOCK] = _merge(runs[STOCK], key, op.tolerance) if key in stock_keys else Measurement(note="untuned")
        else:
            stock = db.baselines(wl, target).get(STOCK)
            res[STOCK] = Measurement(stock, None, True, "from the database's baselines") if stock else Measurement()
        rows.append(SuiteRow(name, wl, op.flops(wl), res))
        if store:
            for side in sides:
                if res[side].ok:
                    db.add_baseline(wl, target, side, res[side].us)
            if peak:
                db.add_baseline(wl, target, "sgemm-peak", op.flops(wl) / peak / 1e3)
    return Suite(target, threads, rounds, peak, rows, (load_start, os.getloadavg()[0]))


if __name__ == "__main__":
    _keys = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if len(sys.argv) > 2:
        _suite_worker(sys.argv[1], _keys, json.loads(sys.argv[2]))
    else:
        _eager_worker(_keys)
