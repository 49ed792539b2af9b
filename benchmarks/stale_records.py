"""Which shipped records a new default schedule makes stale: each file's best record of a workload
against the operator's current default, both compiled for that file's CPU and timed side by side
here (3 alternating rounds, as the serve-time check does).

A record compiled for another CPU of the same vector width runs here as that CPU's code would
(e.g. an AVX2 record on an AVX-512 host runs its AVX2 code), so the ratio says whether the default
beats the record in the code that CPU gets, not that CPU's latency.

    .venv/bin/python benchmarks/stale_records.py dilated_conv2d context_d16 context_d4 [--schedules DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCHEDULES = Path(__file__).resolve().parents[1] / "schedules"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("op")
    ap.add_argument("examples", nargs="+")
    ap.add_argument("--schedules", type=Path, default=SCHEDULES, help="directory of shipped files (default: the repo's)")
    args = ap.parse_args(argv)

    import torch

    from types import SimpleNamespace

    from opsearch import ops
    from opsearch.runtime import kernels
    from opsearch.runtime.loading import kernel_from_record, time_pair
    from opsearch.targets import host_cores

    torch.set_num_threads(host_cores())
    op = ops.get(args.op)
    print("| example | file | record µs | default µs | default / record |\n| --- | --- | ---: | ---: | ---: |")
    for name in args.examples:
        wl = op.example(name)
        key = json.dumps(wl.json_args(), sort_keys=True)
        for path in sorted(args.schedules.glob("llvm-*.jsonl")):
            recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            recs = [r for r in recs if r["op"] == wl.op and json.dumps(r["args"], sort_keys=True) == key]
            if not recs:
                continue
            best = min(recs, key=lambda r: r["mean_us"])
            target = best["target"]
            rec = kernel_from_record(SimpleNamespace(trace=best["trace"]), wl, target)
            t_rec, t_def = time_pair(rec, kernels.default_kernel(wl, target), wl)
            print(f"| {name} | {path.name} | {t_rec:.1f} | {t_def:.1f} | {t_def / t_rec:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
