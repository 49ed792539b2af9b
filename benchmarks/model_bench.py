"""Whole models end to end: PyTorch eager vs opsearch vs torch.compile, for the demo's TCN and
every model in examples/, at each batch size asked for, in one process per model.

    python benchmarks/model_bench.py [--batch 1 --batch 4] [--tune N] [--db URL] [--rounds 7]

Each model runs through ``opsearch.bench.models.bench_model`` (what ``opsearch model bench`` runs)
in its own process, so one model's threads and caches do not disturb the next; the table gives
the median forward latency of each side and the ratios. ``--batch`` overrides each builder's
own batch (the TCN's layers were tuned and shipped for batch 4: other batch sizes run the
records of the nearest tuned workload or the default schedule, and optimize() keeps only the
swaps that time faster than PyTorch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = [
    ("demo TCN", "opsearch.cli.demo_cmd:tcn_model"),
    ("examples/tcn.py", str(ROOT / "examples" / "tcn.py") + ":build"),
    ("dynamic conv block", str(ROOT / "examples" / "dynamic_conv_block.py") + ":build"),
    ("Hyena FFT-conv block", str(ROOT / "examples" / "hyena_fftconv_block.py") + ":build"),
    ("involution block", str(ROOT / "examples" / "involution_block.py") + ":build"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default: each builder's)")
    ap.add_argument("--tune", type=int, default=0, help="trials per untuned workload (0: none)")
    ap.add_argument("--db", default=None, help="database URL (default: $OPSEARCH_DB or the user's SQLite file)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", action="append", help="run only models whose name contains this")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("opsearch")
    rows = []
    for label, builder in MODELS:
        if args.only and not any(o in label for o in args.only):
            continue
        cmd = [str(exe), "model", "bench", builder, "--json", "--rounds", str(args.rounds), "--tune", str(args.tune)]
        cmd += [f"--batch={b}" for b in args.batch or []] + ([f"--db={args.db}"] if args.db else [])
        print(f"# {label}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=os.environ)
        if p.returncode != 0:
            print(f"{label}: failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
            continue
        for r in json.loads(p.stdout):
            rows.append((label, r))
            print(r["optimize_report"], file=sys.stderr)
    print("\n| model | batch | eager ms | opsearch ms | torch.compile ms | vs eager | vs torch.compile |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in rows:
        print(f"| {label} | {r['batch']} | {r['eager_ms']:.3f} | {r['opsearch_ms']:.3f} | {r['compiled_ms']:.3f} | "
              f"{r['vs_eager']:.2f}x | {r['vs_compiled']:.2f}x |")


if __name__ == "__main__":
    main()
