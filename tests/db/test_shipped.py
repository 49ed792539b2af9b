"""Shipped schedules (``schedules/<target>.jsonl``): read-only, used when the user's DB has none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsearch.db import Record, engine, shipped

LLVM = "llvm:znver3"


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch, wl):
    d = tmp_path / "schedules"
    d.mkdir()
    lines = [Record.new(wl, LLVM, f"s{i}", run_us=[t], trace=[[], []]).to_json() for i, t in enumerate([8.0, 3.0])]
    (d / "llvm-znver3.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    monkeypatch.setattr(shipped, "schedules_dir", lambda: d)
    shipped._best_by_key.cache_clear()
    yield d
    shipped._best_by_key.cache_clear()


def test_best_falls_through_to_shipped(db, wl, wl2, shipped_dir):
    with pytest.warns(UserWarning, match="llvm-znver3.jsonl:3: skipped shipped record"):
        rec = db.best(wl, LLVM)
    assert rec.source == "shipped" and rec.module_hash == "s1" and rec.mean_us == 3.0 and rec.id is None
    assert db.best(wl, LLVM, shipped=False) is None
    assert db.best(wl2, LLVM) is None and db.best(wl, "cuda:sm_90") is None
    assert db.count() == 0  # shipped records are never copied into the user's database
    db.add_record(wl, LLVM, module_hash="mine", run_us=[5.0])
    assert db.best(wl, LLVM).module_hash == "mine"  # the user's own record wins, even if slower


def test_another_cpu_falls_back_to_shipped_schedules_of_the_same_kind(db, wl, shipped_dir):
    with pytest.warns(UserWarning, match="skipped shipped record"):
        rec = db.best(wl, "llvm:skylake-avx512")  # nothing shipped for this CPU: znver3's serve
    assert rec.source == "shipped" and rec.module_hash == "s1" and rec.target == LLVM
    assert db.best(wl, "cuda:sm_90") is None  # never across target kinds


def test_own_file_first_other_cpus_fill_the_workloads_it_lacks(db, wl, wl2, shipped_dir):
    other = [Record.new(w, "llvm:znver4", f"z{i}", run_us=[1.0], trace=[[], []]).to_json() for i, w in enumerate([wl, wl2])]
    (shipped_dir / "llvm-znver4.jsonl").write_text("\n".join(json.dumps(x) for x in other) + "\n")
    with pytest.warns(UserWarning, match="skipped shipped record"):
        assert db.best(wl, LLVM).module_hash == "s1"  # znver3's own record, though znver4's is faster
    assert db.best(wl2, LLVM).module_hash == "z1"  # znver3's file has no wl2: znver4's serves
    assert db.best(wl2, "llvm:znver4").target == "llvm:znver4"
    assert db.best(wl, "llvm:znver4").module_hash == "z0"


def test_cpus_with_the_same_vector_width_serve_first(db, wl, wl2, shipped_dir):
    other = [Record.new(w, "llvm:znver4", f"z{i}", run_us=[1.0], trace=[[], []]).to_json() for i, w in enumerate([wl, wl2])]
    (shipped_dir / "llvm-znver4.jsonl").write_text("\n".join(json.dumps(x) for x in other) + "\n")
    assert shipped.vector_isa("llvm:znver1") == shipped.vector_isa("llvm:znver3") == "avx2"
    assert shipped.vector_isa("llvm:znver4") == "avx512f" and shipped.vector_isa("cuda:sm_90") is None
    with pytest.warns(UserWarning, match="skipped shipped record"):
        assert db.best(wl, "llvm:znver1").module_hash == "s1"  # AVX2 znver3's, though AVX-512 znver4's is faster
    assert db.best(wl2, "llvm:znver1").module_hash == "z1"  # only znver4 has wl2
    assert db.best(wl, "llvm:skylake-avx512").module_hash == "z0"  # AVX-512 prefers AVX-512


def test_data_directories_are_found():
    root = Path(__file__).resolve().parents[2]
    assert engine.database_dir() == root / "database"
    assert len(list((engine.database_dir() / "versions").glob(f"{engine.HEAD_REVISION}_*.py"))) == 1
    assert shipped.schedules_dir() == root / "schedules"
    assert shipped.shipped_file("cuda:sm_90").name == "cuda-sm_90.jsonl"


def test_every_shipped_file_holds_good_records_of_its_own_target():
    """The repo's schedule files: every line a current-schema record of the file's target, with
    a trace to rebuild it from, a measured latency, and at most 4 records per workload."""
    from collections import Counter

    from opsearch import ops

    files = sorted(shipped.schedules_dir().glob("*.jsonl"))
    assert files, "no shipped schedules"
    for path in files:
        target = path.stem.replace("-", ":", 1)
        per_workload = Counter()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            rec = Record.from_json(json.loads(line), source="shipped")
            where = f"{path.name}:{n}"
            assert rec.target == target and rec.status == "ok" and rec.trace, where
            assert rec.mean_us > 0 and all(t > 0 for t in rec.run_us), where
            assert rec.workload.op in ops.names(), where
            per_workload[rec.workload.key()] += 1
        assert max(per_workload.values()) <= 4, path.name
