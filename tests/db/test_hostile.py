"""A schedule database is untrusted input: hostile and broken records, imported into SQLite and
PostgreSQL, stored by another machine in a shared database or shipped in a file, are rejected
with a one-line reason, never replayed into a compiled kernel, and add no rows."""

from __future__ import annotations

import json
import math
import re

import pytest
from click.testing import CliRunner

from opsearch.cli.main import cli
from opsearch.db.validate import ANNOTATIONS, INSTRUCTIONS, TraceError, check_numbers, check_trace

from .test_import import _line, scheduled  # noqa: F401 - the fixture: a real schedule of a test workload


def _loop(trace) -> str:
    """A loop handle the trace defines (for instructions appended to it)."""
    return next(inst[3][0] for inst in trace[0] if inst[0] == "GetLoops")


def _with(trace, *insts):
    t = json.loads(json.dumps(trace))
    t[0].extend(insts)
    return t


def hostile(scheduled) -> list[tuple[str, str, str]]:
    """(line, the reason's expected words, which check catches it: trace / numbers / import)."""
    wl, trace, h = scheduled
    loop = _loop(trace)
    deep = [[[[[[[[1]]]]]]]]
    return [
        (_line(wl, _with(trace, ["Annotate", [loop, '"#include <stdlib.h>\\nint f(){system(\\"id\\");}"'],
                                 ["pragma_import_c"], []]), h), "annotation 'pragma_import_c'", "trace"),
        (_line(wl, _with(trace, ["Annotate", [loop, '"define void @f() { ret void }"'], ["pragma_import_llvm"], []]), h),
         "annotation 'pragma_import_llvm'", "trace"),
        (_line(wl, _with(trace, ["Annotate", [loop, 16], ["pragma_anything"], []]), h), "annotation 'pragma_anything'",
         "trace"),
        (_line(wl, _with(trace, ["Annotate", [loop, '"SSRSRS; drop"'], ["meta_schedule.tiling_structure"], []]), h),
         "is not multi-level tiling's structure", "trace"),
        (_line(wl, _with(trace, ["TransformLayout", [loop], ["lambda i: os.system('id')"], []]), h),
         "'TransformLayout' is not an instruction", "trace"),
        (_line(wl, _with(trace, ["Evil", [], [], []]), h), "'Evil' is not an instruction", "trace"),
        (_line(wl, _with(trace, ["GetSBlock", [], ["x" * 5000, "main"], ["b99"]]), h), "string of 5000 characters",
         "trace"),
        (_line(wl, _with(trace, ["Split", [loop, deep], [True, False], ["l98", "l97"]]), h), "nests deeper", "trace"),
        (_line(wl, _with(trace, *[["GetLoops", [], [], ["l500"]]] * 2500), h), "instructions (at most 2000)", "trace"),
        (_line(wl, _with(trace, ["Parallel", ["l_undefined"], [], []]), h), "not defined by an earlier instruction",
         "trace"),
        (_line(wl, _with(trace, ["Bind", [loop], ["blockIdx.x; rm -rf /"], []]), h), "is not a GPU thread axis", "trace"),
        (_line(wl, "import os", h), "trace must be", "trace"),
        (_line(wl, trace, h, mean_us=float("nan"), run_us=[float("nan")]), "not a finite", "numbers"),
        (_line(wl, trace, h, mean_us=-3.0, run_us=[-3.0]), "not a finite, non-negative", "numbers"),
        (_line(wl, trace, "12345"), "module_hash", "import"),  # not the schedule its trace builds
        (_line(wl, trace, h, target="llvm -mcpu=znver4 -libs=evil"), "target", "import"),
        (_line(wl, trace, h, target="rocm:gfx90a"), "target", "import"),
        (_line(wl, trace, h)[:120], "not JSON", "import"),  # truncated
    ]


def test_validator_accepts_every_shipped_and_default_trace():
    """The allow-list covers what opsearch itself writes: every shipped record and every
    operator's default schedule on CPU and CUDA (a tuning run's candidates replay through it
    in the tuning tests)."""
    import glob

    from opsearch import ops
    from opsearch.db.replay import trace_json
    from opsearch.db.shipped import schedules_dir
    from opsearch.ops.tir import default_schedule

    n = 0
    for path in sorted(glob.glob(str(schedules_dir() / "*.jsonl"))):
        for line in open(path):
            check_trace(json.loads(line)["trace"])
            n += 1
    assert n > 200
    for name in ops.names():
        op = ops.get(name)
        wl = op.example(next(iter(op.examples)))
        for target in ("cpu", "cuda:sm_90"):
            check_trace(trace_json(default_schedule(wl, target)))
    assert all(INSTRUCTIONS.values()) and all(reason for reason, _ in ANNOTATIONS.values())


def test_validator_rejects_each_hostile_trace(scheduled):
    for line, words, where in hostile(scheduled):
        d = json.loads(line) if where != "import" else None
        if where == "trace":
            with pytest.raises(TraceError, match=re.escape(words)):
                check_trace(d["trace"])
        elif where == "numbers":
            check_trace(d["trace"])
            with pytest.raises(TraceError, match=re.escape(words)):
                check_numbers(d["run_us"], d["mean_us"])
    check_numbers([1.0, 2.5], 1.75)
    with pytest.raises(TraceError):
        check_numbers([math.inf])


def test_import_of_hostile_lines_adds_only_the_good_one(db, scheduled, tmp_path, monkeypatch):
    """SQLite and PostgreSQL: the good line is added; every bad line is reported with its
    number and a one-line reason and adds nothing; nothing is compiled; the CLI exits 1 with
    one line per rejected record and no traceback."""
    import tvm

    monkeypatch.setattr(tvm, "compile", lambda *a, **k: pytest.fail("import compiled something"))
    wl, trace, h = scheduled
    bad = hostile(scheduled)
    path = tmp_path / "shared.jsonl"
    path.write_text("\n".join([_line(wl, trace, h)] + [line for line, _, _ in bad]) + "\n")
    with path.open() as f:
        report = db.import_(f)
    assert report.imported == 1 and db.count() == 1
    assert [n for n, _ in report.errors] == list(range(2, len(bad) + 2))
    for (n, reason), (_, words, _) in zip(report.errors, bad):
        assert words in reason and "\n" not in reason and "Traceback" not in reason, (n, reason)
    result = CliRunner().invoke(cli, ["db", "import", str(path), "--db", db.url])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert db.count() == 1


def test_hostile_record_in_a_shared_database_never_replays(db, scheduled, monkeypatch, tmp_path):
    """A record another machine wrote straight into a shared database (no import) is refused at
    kernel selection: its trace is never applied, and the default schedule serves."""
    import tvm.s_tir

    from opsearch.runtime.loading import kernel_for

    wl, trace, h = scheduled
    loop = _loop(trace)
    evil = _with(trace, ["Annotate", [loop, '"int x;"'], ["pragma_import_c"], []])
    db.add_record(wl, "cpu", module_hash="evil", run_us=[0.5], trace=evil)
    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path / "kernels"))
    applied = []
    orig = tvm.s_tir.Trace.apply_json_to_schedule
    monkeypatch.setattr(tvm.s_tir.Trace, "apply_json_to_schedule",
                        staticmethod(lambda t, s: (applied.append(t), orig(t, s))[1]))
    k = kernel_for(wl, "cpu", db)
    assert k.source.startswith("default schedule"), k.source
    assert not applied


def test_hostile_shipped_line_is_skipped(tmp_path, monkeypatch, scheduled):
    from opsearch.db import shipped

    wl, trace, h = scheduled
    loop = _loop(trace)
    d = tmp_path / "schedules"
    d.mkdir()
    evil = _with(trace, ["Annotate", [loop, '"int x;"'], ["pragma_import_llvm"], []])
    (d / "llvm-othercpu.jsonl").write_text(_line(wl, evil, h, target="llvm:othercpu") + "\n")
    monkeypatch.setattr(shipped, "schedules_dir", lambda: d)
    shipped._best_by_key.cache_clear()
    try:
        with pytest.warns(UserWarning, match="annotation 'pragma_import_llvm'"):
            assert shipped.shipped_best(wl, "llvm:othercpu") is None
    finally:
        shipped._best_by_key.cache_clear()


@pytest.mark.parametrize("target", ["cpu", "cuda:sm_90"])
def test_validator_accepts_the_search_spaces_sketches(target):
    """Every design-space sketch of our search spaces (one example per operator) passes: the
    allow-list does not refuse what opsearch's own search produces (postprocessing adds only
    listed instructions: shipped records hold them)."""
    from tvm.s_tir import meta_schedule as ms

    from opsearch import ops
    from opsearch.db.replay import plain_json
    from opsearch.ops.tir import ir_module
    from opsearch.search.space import design_space
    from opsearch.targets import register_intrinsics, resolve

    spec = resolve(target)
    register_intrinsics(spec.kind)
    n = 0
    for name in ops.names():
        op = ops.get(name)
        wl = op.example(next(iter(op.examples)))
        gen, _ = design_space(wl, spec)
        ctx = ms.TuneContext(mod=ir_module(wl), target=spec.tvm(), space_generator=gen, task_name=name, num_threads=1)
        for sch in ctx.generate_design_space():
            check_trace(plain_json(sch.trace.as_json()))
            n += 1
    assert n >= len(ops.names())
