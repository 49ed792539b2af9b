"""Whether a retune beats what this CPU is served: each example workload's best record in a
database against the record ``schedules/`` serves this CPU and the operator's default schedule,
timed side by side in fresh processes (``confirm.time_in_fresh_processes``).

Run it before replacing a CPU's lines in ``schedules/``: a record measured faster in its own
search may not be faster than the shipped one, timed together.

    .venv/bin/python benchmarks/retune_check.py --db sqlite:////tmp/ship.db dilated_conv2d:context_d4 condconv2d:effnet_3x3_e8
"""

from __future__ import annotations

import argparse
import statistics
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="database URL of the retune")
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("examples", nargs="+", help="OP:EXAMPLE")
    args = ap.parse_args(argv)

    from opsearch import db as dbmod
    from opsearch import ops
    from opsearch.db.replay import trace_json
    from opsearch.db.shipped import shipped_best
    from opsearch.ops.tir import default_schedule
    from opsearch.search.confirm import time_in_fresh_processes
    from opsearch.targets import resolve

    target = resolve("cpu")
    db = dbmod.connect(args.db)
    print(f"target {target.name}; medians of {args.processes} fresh processes (µs)\n")
    print("| workload | retuned | served (file) | default | served / retuned | default / retuned |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for ex in args.examples:
        op_name, _, name = ex.partition(":")
        wl = ops.get(op_name).example(name)
        traces, where = {}, "none"
        best = db.best(wl, target.name, shipped=False)
        if best is not None and best.trace is not None:
            traces["retuned"] = best.trace
        served = shipped_best(wl, target.name)
        if served is not None and served.trace is not None:
            traces["served"], where = served.trace, served.target
        traces["default"] = trace_json(default_schedule(wl, target))
        medians, errors = time_in_fresh_processes(wl, target, traces, args.processes)
        us = {k: statistics.median(v) for k, v in medians.items()}
        cell = {k: f"{us[k]:,.1f}" if k in us else ("does not build" if k in errors else "none") for k in traces}
        ratio = {k: f"{us[k] / us['retuned']:.2f}" if k in us and "retuned" in us else "" for k in ("served", "default")}
        print(f"| {ex} | {cell.get('retuned', 'none')} | {cell.get('served', 'none')} ({where}) | {cell['default']} "
              f"| {ratio['served']} | {ratio['default']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
