"""The Python surface of ../shared/INTERFACE.md is reachable from ``import opsearch``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_interface_names_resolve_lazily():
    code = """
import sys, opsearch
assert 'tvm' not in sys.modules, 'import opsearch must stay cheap'
assert callable(opsearch.tune) and callable(opsearch.load) and callable(opsearch.optimize)
assert callable(opsearch.db.connect) and callable(opsearch.search.tune) and callable(opsearch.db.Database)
assert 'dilated_conv2d' in opsearch.ops.names() and hasattr(opsearch.nn, 'DilatedConv2d')
assert callable(opsearch.functional.dilated_conv2d)
try:
    opsearch.no_such_thing
except AttributeError as e:
    assert 'no_such_thing' in str(e)
else:
    raise AssertionError('unknown attribute resolved')
print(opsearch.__version__)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    from importlib.metadata import version

    assert p.stdout.strip() == version("opsearch")


THREADS = r"""
import os, tvm
import opsearch.functional
print(tvm.get_global_func("runtime.NumThreads")(), len(os.sched_getaffinity(0)))
"""


@pytest.mark.parametrize("preset", [None, "1"])
def test_tvm_uses_every_usable_core_unless_the_user_chose(preset):
    """TVM alone would use half the hardware threads on x86 (1 of 2 here)."""
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    if preset:
        env["TVM_NUM_THREADS"] = preset
    p = subprocess.run([sys.executable, "-c", THREADS], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    pool, cores = map(int, p.stdout.split()[-2:])
    assert pool == (int(preset) if preset else cores)
