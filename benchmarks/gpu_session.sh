#!/usr/bin/env bash
# The GPU session in three steps: build here, measure on a lent H200, import here.
#
#   bash benchmarks/gpu_session.sh prepare [TRIALS] [LIMIT]   # here (TVM, nvcc; no GPU needed)
#   bash benchmarks/gpu_session.sh measure                    # on the device machine (no TVM)
#   bash benchmarks/gpu_session.sh import DIR [--db URL]      # here, DIR = the fetched $OUT
#
# prepare: for every operator, a no-measure tune of all its example workloads for cuda:sm_90
# (TRIALS per workload, default 24; 0 exports the default schedules alone) whose candidates are
# written as a bundle under benchmarks/gpu_bundles/OP (the LIMIT newest per workload, default 12,
# with the default schedule). The bundles are git-ignored: pass them to the device tool with
# carry=["benchmarks/gpu_bundles"] (64 MiB in all; prepare prints the size).
# measure: one call of the device tool, e.g.
#   run(command="bash benchmarks/gpu_session.sh measure", carry=["benchmarks/gpu_bundles"], timeout_s=540)
# runs python -m opsearch.gpu_runner --torch-path on every bundle (the torch-facing CUDA kernel of each
# workload checked on CUDA tensors first; then CUDA events, L2 flushed, outputs checked
# against the float64 reference, cuDNN / torch.fft / torch.compile timed beside them), with a
# time box per bundle so the whole call stays under 8 minutes; it writes $OUT/OP.json,
# $OUT/OP.md and $OUT/device.txt and prints every table.
# import: stores every $OUT/*.json in the database (opsearch db import-measurements: all or
# nothing per file), so the next prepare's search trains its cost model on them.
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:-}"
BUNDLES=benchmarks/gpu_bundles

case "$step" in
  prepare)
    trials="${2:-24}"; limit="${3:-12}"
    py=.venv/bin/python; exe=.venv/bin/opsearch
    [ -x "$exe" ] || { echo "run 'make venv' first" >&2; exit 2; }
    rm -rf "$BUNDLES"; mkdir -p "$BUNDLES"
    for op in $("$py" -c "from opsearch import ops; print(' '.join(ops.names()))"); do
      n=$("$py" -c "from opsearch import ops; print(len(ops.get('$op').examples))")
      if [ "$trials" -gt 0 ]; then
        "$exe" tune "$op" --example all --target cuda:sm_90 --no-measure --trials $((trials * n)) \
          --trials-per-workload "$trials" --batch 8 --export-candidates "$BUNDLES/$op" --export-limit "$limit"
      else
        "$py" - "$op" "$BUNDLES/$op" <<'PY'
import sys
from opsearch import db, ops
from opsearch.runtime.bundle import export_bundle
spec = ops.get(sys.argv[1])
m = export_bundle(db.connect(), [spec.example(e) for e in spec.examples], "cuda:sm_90", sys.argv[2], limit=1)
print(f"{sys.argv[1]}: {len(m['candidates'])} candidates, skipped: {m['skipped']}")
PY
      fi
    done
    du -sh "$BUNDLES"
    ;;
  measure)
    OUT="${OUT:-/tmp/opsearch-gpu}"; mkdir -p "$OUT"
    py=python3
    { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,utilization.gpu \
        --format=csv || true; "$py" -c "import torch, cupy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cupy', cupy.__version__)"; } \
      | tee "$OUT/device.txt"
    n=$(ls -d "$BUNDLES"/*/ 2>/dev/null | wc -l)
    [ "$n" -gt 0 ] || { echo "no bundles under $BUNDLES: run prepare here and carry them" >&2; exit 2; }
    box=$(( 450 / n ))  # seconds per bundle: the whole call within 8 minutes
    for b in "$BUNDLES"/*/; do
      op=$(basename "$b")
      echo "== $op (time box ${box} s)"
      PYTHONPATH=. timeout "$box" "$py" -m opsearch.gpu_runner "$b" "$OUT/$op.json" --repeats 30 --torch-path \
        > "$OUT/$op.md" 2> "$OUT/$op.log" || echo "$op: runner exit $? (see $op.log)"
      tail -n 20 "$OUT/$op.md"
    done
    ;;
  import)
    dir="${2:?give the directory with the measurements (the fetched \$OUT)}"; shift 2
    for f in "$dir"/*.json; do
      .venv/bin/opsearch db import-measurements "$f" "$@"
    done
    ;;
  *)
    sed -n 2,22p "$0"; exit 2 ;;
esac
