"""The Python surface of ../shared/INTERFACE.md is reachable from ``import opsearch``."""

from __future__ import annotations

import subprocess
import sys


def test_interface_names_resolve_lazily():
    code = """
import sys, opsearch
assert 'tvm' not in sys.modules, 'import opsearch must stay cheap'
assert callable(opsearch.tune) and callable(opsearch.load) and callable(opsearch.optimize)
assert callable(opsearch.db.connect) and callable(opsearch.search.tune) and callable(opsearch.report.write_report)
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
