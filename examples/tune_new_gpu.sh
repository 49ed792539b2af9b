#!/usr/bin/env bash
# Tune opsearch operators for a new GPU (here cuda:sm_90) from a machine without one.
#
# 1. On this machine (no GPU needed): a TVM RPC tracker that GPU machines register with.
#      python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
# 2. On each GPU machine (same apache-tvm 0.27 wheel, CUDA driver): an RPC server under a key.
#      python -m tvm.exec.rpc_server --tracker TRACKER_HOST:9190 --key h100
# 3. Here: tune through the tracker. Every candidate is compiled for sm_90 (nvcc checks it, build
#    errors are stored with nvcc's message), timed on a GPU server, and stored in the database:
#      opsearch tune dilated_conv2d --example all --target cuda:sm_90 --rpc TRACKER_HOST:9190:h100 --trials 512
#    Use PostgreSQL (--db postgresql://user@host/opsearch) when several machines tune together.
# 4. Then on the GPU machine: opsearch.load(..., target="cuda:sm_90", db=...) / opsearch db best.
#
# Without a GPU server, --no-measure compiles every candidate with nvcc and ranks them with the
# cost model, stored as 'unmeasured' (never mixed with measurements). That is what this script
# runs, so it works here:
set -euo pipefail
DB="${OPSEARCH_DB:-sqlite:///$(mktemp -d)/gpu.db}"
opsearch tune dilated_conv2d --example context_d4 --target cuda:sm_90 --no-measure --trials 16 --db "$DB"
opsearch db list --db "$DB"
