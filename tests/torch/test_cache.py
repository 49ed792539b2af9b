"""The disk kernel cache: a second process loads instead of compiling; corrupted or incomplete
entries are detected and rebuilt; the hash covers the schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsearch import cache, kernels, ops

# Runs one kernel in a fresh process; with NO_COMPILE set, tvm.compile raises.
SCRIPT = r"""
import json, os, torch, tvm
if os.environ.get("NO_COMPILE"):
    def _no(*a, **k): raise AssertionError("tvm.compile called")
    tvm.compile = _no
import opsearch.functional as F
from opsearch import cache
torch.manual_seed(0)
x, w = torch.randn(1, 3, 10, 9), torch.randn(4, 3, 3, 3)
y = F.dilated_conv2d(x, w, padding=2, dilation=2)
err = float((y - torch.nn.functional.conv2d(x, w, padding=2, dilation=2)).abs().max())
print(json.dumps(dict(err=err, **vars(cache.stats))))
"""


def _run(tmp: Path, **env) -> dict:
    full = dict(os.environ, OPSEARCH_CACHE_DIR=str(tmp), **env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    first = _run(tmp)
    return tmp, first


def test_second_process_loads_without_compiling(warm):
    tmp, first = warm
    assert first["compiles"] == 1 and first["hits"] == 0 and first["err"] < 1e-5
    assert len(list(tmp.glob("*.so"))) == 1 and len(list(tmp.glob("*.json"))) == 1
    second = _run(tmp, NO_COMPILE="1")
    assert second["compiles"] == 0 and second["hits"] == 1 and second["err"] < 1e-5


def test_corrupted_library_is_rebuilt(warm):
    tmp, _ = warm
    (lib,) = tmp.glob("*.so")
    good = lib.read_bytes()
    lib.write_bytes(good[: len(good) // 2])  # truncated
    again = _run(tmp)
    assert again["corrupted"] == 1 and again["compiles"] == 1 and again["err"] < 1e-5
    side = json.loads(lib.with_suffix(".json").read_text())
    assert side["so_sha256"] == cache._file_sha256(lib)


def test_library_without_sidecar_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path))
    wl = ops.get("dilated_conv1d").workload(x=[1, 2, 9], weight=[3, 2, 3], dilation=2)
    before = cache.stats.compiles
    k = cache.cached_kernel(wl, "cpu", lambda: kernels.default_schedule(wl, "cpu"))
    (meta,) = tmp_path.glob("*.json")
    meta.unlink()
    cache.cached_kernel(wl, "cpu", kernels.default_schedule(wl, "cpu"))
    assert cache.stats.compiles == before + 2 and k.out_shape == (1, 3, 9)
    assert cache.clear() == 1 and not list(tmp_path.iterdir())


def test_hash_covers_schedule_target_and_versions():
    wl = ops.get("dilated_conv1d").workload(x=[1, 2, 9], weight=[3, 2, 3], dilation=2)
    target = kernels.resolve("cpu")
    base = cache.key_inputs(wl, target, "schedule A")
    assert {"workload", "schedule_sha256", "target", "target_config", "tvm", "opsearch"} <= set(base)
    assert cache.content_hash(base) != cache.content_hash(cache.key_inputs(wl, target, "schedule B"))
    other = kernels.resolve("llvm:skylake")
    assert cache.content_hash(base) != cache.content_hash(cache.key_inputs(wl, other, "schedule A"))
    assert cache.content_hash(base) == cache.content_hash(cache.key_inputs(wl, target, "schedule A"))


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSEARCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "opsearch" / "kernels"
