"""Does the search's runner time kernels as they run? Its timings beside fresh processes'.

Takes a workload's ``--k`` fastest records from a database (``--db``; with ``--search N``, a
search of N trials into it first, without shipped records or confirmation), and with ``--unroll``
each one with 512-step unrolling too (``refine.unrolled_trace``). A ``LocalBuildRunner`` (the
search's runner, ``--workers`` workers, its screening) measures all of them as one batch,
``--reps`` times, in a new order each time; then every kernel is timed in ``--processes`` fresh
processes (``confirm.time_in_fresh_processes``, as the tuner's confirmation does). Prints each
kernel's runner timings beside its per-process medians, and how many runner timings came out
more than 1.5x the kernel's fresh median. ``--pinned`` runs the runner's workers with TVM's pool
threads pinned to cores (``TVM_BIND_THREADS=1``, as before 2026-12-07: ``opsearch.search.runner``).

    .venv/bin/python benchmarks/runner_check.py --example lightweight_conv1d:decoder_k15_causal \\
        --db /tmp/rc.db --search 128 --k 4 --unroll --reps 4 --processes 3 [--pinned]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="lightweight_conv1d:decoder_k15_causal", help="OP:EXAMPLE")
    ap.add_argument("--db", required=True, help="SQLite file to read the records from (and search into)")
    ap.add_argument("--search", type=int, default=0, help="trials to search first (0: use the records there)")
    ap.add_argument("--k", type=int, default=4, help="the fastest records to time")
    ap.add_argument("--unroll", action="store_true", help="also each one with 512-step unrolling")
    ap.add_argument("--reps", type=int, default=4, help="runner batches, each of every kernel")
    ap.add_argument("--workers", type=int, default=None, help="runner workers (default: the usable cores)")
    ap.add_argument("--processes", type=int, default=3, help="fresh processes timing every kernel")
    ap.add_argument("--pinned", action="store_true", help="TVM_BIND_THREADS=1 in the runner's workers")
    a = ap.parse_args()

    from opsearch.search.runner import BIND_ENV

    if a.pinned:
        os.environ[BIND_ENV] = "1"  # a value already set is kept by the runner, and inherited by its workers

    from opsearch import db as dbmod
    from opsearch import ops, targets
    from opsearch.search import tune

    op, name = a.example.split(":", 1)
    wl = ops.get(op).example(name)
    db = dbmod.connect(f"sqlite:///{a.db}")
    if a.search:
        tune(wl, "cpu", db, trials=a.search, batch=32, verify=False, include_shipped=False, confirm=0, seed=0)
    recs = db.top_k(wl, "cpu", a.k)
    if not recs:
        sys.exit(f"no ok records of {a.example} on this CPU in {a.db}: run with --search N")

    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.runner import RunnerInput
    from tvm.s_tir.schedule import Schedule, Trace

    from opsearch.db.replay import trace_json, workload_mod
    from opsearch.search import refine
    from opsearch.search.confirm import time_in_fresh_processes
    from opsearch.search.runner import LocalBuildRunner

    mod, post = workload_mod(wl), ms.Postproc.create("llvm")
    kernels = {}  # name -> post-processed schedule
    for i, r in enumerate(recs):
        sch = Schedule(mod)
        Trace.apply_json_to_schedule(r.trace, sch)
        choice = refine._unroll_choice(sch.trace)
        steps = [int(v) for v in choice.attrs[0]][int(sch.trace.get_decision(choice))] if choice is not None else "-"
        kernels[f"top{i}-u{steps}"] = sch
        if a.unroll and (tr := refine.unrolled_trace(sch.trace, 512)) is not None:
            if (built := refine.build(mod, tr, post, 1)) is not None:
                kernels[f"top{i}-u512"] = built
    names = list(kernels)

    runner = LocalBuildRunner(targets.resolve("cpu").config, build_workers=a.workers)
    got: dict[str, list] = {n: [] for n in names}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for _ in range(a.reps):
                order = rng.sample(names, len(names))
                inputs = []
                for n in order:
                    path = os.path.join(tempfile.mkdtemp(dir=tmp), "module.json")
                    with open(path, "w") as f:
                        f.write(tvm.ir.save_json(kernels[n].mod))
                    inputs.append(RunnerInput(path, "llvm", ArgInfo.from_prim_func(kernels[n].mod["main"])))
                for n, fut in zip(order, runner.run(inputs)):
                    res = fut.result()
                    got[n].append(None if res.error_msg else 1e6 * statistics.fmean(float(x) for x in res.run_secs))
        finally:
            runner.shutdown()
    fresh, errors = time_in_fresh_processes(wl, targets.resolve("cpu"), {n: trace_json(kernels[n]) for n in names},
                                            a.processes)
    print(f"{a.example}: the runner's workers {'pinned' if a.pinned else 'unpinned unless the variable was set'}"
          f" ({BIND_ENV}={os.environ.get(BIND_ENV, 'unset')} here)")
    print(f"{'kernel':12s} {'runner us, each batch':>36s} {'fresh processes us':>28s}")
    slow = total = 0
    for n in names:
        med = statistics.median(fresh[n]) if fresh.get(n) else None
        runs = [x for x in got[n] if x is not None]
        total += len(runs)
        slow += sum(1 for x in runs if med and x > 1.5 * med)
        print(f"{n:12s} {' '.join(f'{x:.0f}' if x else 'err' for x in got[n]):>36s} "
              f"{' '.join(f'{x:.0f}' for x in fresh.get(n, [])) or errors.get(n, '')[:28]:>28s}")
    print(f"runner timings over 1.5x the kernel's fresh median: {slow} of {total}")


if __name__ == "__main__":
    main()
