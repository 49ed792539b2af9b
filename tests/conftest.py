"""Shared test fixtures: fresh random inputs (seed printed on failure) and operator checks."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

# Compiled kernels go to a per-session cache, not the user's (opsearch.runtime.cache).
# ... and the default schedule database is a per-session file, not the user's.
_SCRATCH = tempfile.mkdtemp(prefix="opsearch-test-")
atexit.register(shutil.rmtree, _SCRATCH, True)
os.environ.setdefault("OPSEARCH_CACHE_DIR", os.path.join(_SCRATCH, "kernels"))
os.environ.setdefault("OPSEARCH_DB", "sqlite:///" + os.path.join(_SCRATCH, "opsearch.db"))
# Timing-based tests (tuning improves on the default, cost-model ranking) run TVM on one thread:
# on a 2-vCPU VM, two-thread timings of ~10 us kernels are dominated by thread wake-ups. opsearch
# itself uses every core (tests/test_package.py checks that with the variable unset).
os.environ.setdefault("TVM_NUM_THREADS", "1")
# The native torch kernels are built once per test session, shared by every subprocess.
os.environ.setdefault("OPSEARCH_NATIVE_DIR", os.path.join(_SCRATCH, "native"))

SEED = int.from_bytes(os.urandom(4), "little")


def pytest_report_header(config):
    return f"opsearch random seed: {SEED} (inputs are fresh each run)"


@pytest.fixture
def gen(request):
    """A generator seeded freshly per test; the seed is in the test's failure output."""
    seed = (SEED + hash(request.node.nodeid)) % 2**31
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def random_inputs(op, wl, gen, dtype=torch.float64):
    """Random tensors for every present parameter; floats in ``dtype`` (float64 for references)."""
    a = wl.args
    out = {}
    for p in op.tensors:
        if a[p.name] is None:
            continue
        t = op.sample(a, p, a[p.name], gen, dtype)
        if t.is_floating_point():
            assert t.abs().sum() > 0, "inputs must never be all zeros"
        out[p.name] = t
    return out


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.double(), ref.double()
    return float((y - ref).norm() / ref.norm())
