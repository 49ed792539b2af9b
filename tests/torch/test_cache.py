"""The disk kernel cache: a second process loads instead of compiling; corrupted or incomplete
entries are detected and rebuilt; the hash covers the schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsearch import ops
from opsearch.ops import tir
from opsearch.runtime import cache, kernels

# Runs one kernel in a fresh process; with NO_COMPILE set, tvm.compile raises.
SCRIPT = r"""
import json, os, torch, tvm
if os.environ.get("NO_COMPILE"):
    def _no(*a, **k): raise AssertionError("tvm.compile called")
    tvm.compile = _no
if os.environ.get("NO_SCHEDULE"):
    import opsearch.runtime.kernels
    def _no_schedule(*a, **k): raise AssertionError("default schedule built")
    opsearch.runtime.kernels.default_schedule = _no_schedule
import opsearch.functional as F
from opsearch.runtime import cache
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
    second = _run(tmp, NO_COMPILE="1", NO_SCHEDULE="1")  # the memo names the library: no schedule built
    assert second["compiles"] == 0 and second["hits"] == 1 and second["memo_hits"] == 1 and second["err"] < 1e-5


def test_bad_memo_is_ignored_and_rewritten(warm):
    tmp, _ = warm
    (memo,) = tmp.glob("*.memo")
    good = memo.read_text()
    for bad in ("{not json", json.dumps({"hash": "../../etc/passwd"}), json.dumps({"hash": "0" * 64})):
        memo.write_text(bad)
        again = _run(tmp, NO_COMPILE="1")
        assert again["hits"] == 1 and again["memo_hits"] == 0 and again["compiles"] == 0 and again["err"] < 1e-5
        assert memo.read_text() == good


def test_memo_for_another_workload_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path))
    a = ops.get("dilated_conv1d").workload(x=[1, 2, 11], weight=[3, 2, 3])
    b = ops.get("dilated_conv1d").workload(x=[1, 2, 13], weight=[3, 2, 3])
    target = kernels.resolve("cpu")
    for wl in (a, b):
        cache.cached_module(wl, target, lambda wl=wl: tir.default_schedule(wl, target), memo="default")
    memo_a, memo_b = cache._memo_path(tmp_path, "default", a, target), cache._memo_path(tmp_path, "default", b, target)
    memo_a.write_text(memo_b.read_text())  # a's memo now names b's library
    before = dict(vars(cache.stats))
    k = kernels.cached_kernel(a, target, lambda: tir.default_schedule(a, target), memo="default")
    assert k.out_shape == (1, 3, 11) and cache.stats.memo_hits == before["memo_hits"]
    assert cache.stats.compiles == before["compiles"] and memo_a.read_text() != memo_b.read_text()


def test_memo_key_covers_sources_target_and_versions(tmp_path, monkeypatch):
    wl = ops.get("dilated_conv1d").workload(x=[1, 2, 9], weight=[3, 2, 3], dilation=2)
    cpu, other = kernels.resolve("cpu"), kernels.resolve("llvm:skylake")
    base = cache._memo_path(tmp_path, "default", wl, cpu)
    assert base == cache._memo_path(tmp_path, "default", wl, cpu)
    assert base != cache._memo_path(tmp_path, "default", wl, other)
    assert base != cache._memo_path(tmp_path, "other", wl, cpu)
    monkeypatch.setattr(cache, "source_fingerprint", lambda: "edited")
    assert base != cache._memo_path(tmp_path, "default", wl, cpu)


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
    k = kernels.cached_kernel(wl, "cpu", lambda: tir.default_schedule(wl, "cpu"))
    (meta,) = tmp_path.glob("*.json")
    meta.unlink()
    kernels.cached_kernel(wl, "cpu", tir.default_schedule(wl, "cpu"))
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
