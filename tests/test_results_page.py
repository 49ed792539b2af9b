"""benchmarks/run_all.py's page, from made-up step results: no benchmark runs, no tuning."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


run_all = _load("run_all")

INFO = {"cpu_model": "AMD EPYC", "cpu_family": "25", "cpu_model_number": "17", "mcpu": "znver4", "cores": 2,
        "python": "3.11.2", "torch": "2.13.0", "tvm": "0.27.0.post1", "commit": "abc1234", "dirty": True,
        "started": "2026-12-03 10:00:05", "ended": "2026-12-03 10:24:40", "load_before": 0.37}


def _suite_json() -> str:
    def side(us, ok=True, note="", speedup=None):
        return {"median_us": us, "ok": ok, "note": note, "speedup_vs_pytorch": speedup}

    return json.dumps({
        "target": "llvm:znver4", "threads": 2, "rounds": 3, "load_average": [0.4, 1.8], "peak_gflops": 220.0,
        "peak_method": "fastest of torch.mm and a 3x3 conv",
        "workloads": [
            {"op": "dilated_conv1d", "example": "tcn_d8", "headline": "opsearch-tuned",
             "results": {"pytorch": side(1268.5, note="F.conv1d (oneDNN)", speedup=1.0),
                         "tvm-default": side(2793.8, speedup=0.45),
                         "opsearch-tuned": side(985.4, note="shipped record", speedup=1.29)}},
            {"op": "fft_conv1d", "example": "hyena_4k", "headline": "tvm-default",
             "results": {"pytorch": side(800.3, note="torch.fft", speedup=1.0),
                         "tvm-default": side(779.4, speedup=1.03),
                         "opsearch-tuned": {"ok": False, "note": "untuned"}}},
        ],
        "summary": {"geomean_speedup_vs_pytorch": 1.15, "workloads": 2, "tuned": 1,
                    "geomean_default_vs_pytorch": 0.68},
    })


def _search_json() -> str:
    return json.dumps({
        "workload": "dilated_conv2d:context_d4", "trials": 64, "batch": 32, "stock_batch": 64, "rounds": 1,
        "checkpoints": [16, 32, 64], "population": None,
        "sides": {
            "opsearch": {"wall_s": 30.2, "trials_per_min": 127.9, "valid": 64,
                         "best_own_us": {"16": 2100.0, "32": 1900.0, "64": 1830.0},
                         "best_retimed_us": {"16": 2150.0, "32": 1950.0, "64": 1800.0},
                         "curve_us": [None, 2500.0] + [1830.0] * 62},
            "stock": {"wall_s": 162.0, "trials_per_min": 23.6, "valid": 60,
                      "best_own_us": {"16": 2600.0, "32": 2400.0, "64": 1900.0},
                      "best_retimed_us": {"16": 2650.0, "32": 2380.0, "64": None},
                      "curve_us": [3000.0] * 32 + [1900.0] * 32}},
        "vs_stock": {"opsearch": {"trials_per_min_ratio": 5.42, "retimed_latency_ratio": {"16": 0.811, "32": 0.819}}},
    })


def _results():
    steps = {s.name: s for s in run_all.steps(pg=True)}
    R = run_all.StepResult
    return [
        (steps["suite"], R("2026-12-03 10:00:10", 290.0, 0.37, 0, _suite_json(), "")),
        (steps["models"], R("2026-12-03 10:05:00", 200.0, 1.7, 0,
                            "examples/x.py: failed: RuntimeError: boom\n\n| model | batch | vs eager |\n"
                            "| --- | ---: | ---: |\n| demo TCN | 4 | 1.89x |\n", "# demo TCN: ...\n")),
        (steps["search-context_d4"], R("2026-12-03 10:08:20", 250.0, 1.8, 0, "text table\n", "", _search_json())),
        (steps["search-scnet_64"], R("2026-12-03 10:12:30", 600.0, 1.9, None, "", "stock: batch 1\nstock: batch 2\n")),
        (steps["torch-overhead"], R("2026-12-03 10:22:30", 20.0, 1.5, 1, "",
                                    "Traceback (most recent call last):\n  File \"x.py\", line 3\n"
                                    "RuntimeError: the kernel cache is not writable\n")),
        (steps["db"], R("2026-12-03 10:22:50", 90.0, 1.2, 0,
                        json.dumps({"backend": "sqlite", "records": 20000, "insert_per_s": 5251, "best_median_ms": 0.76,
                                    "best_p95_ms": 5.2, "export_per_s": 1131, "import_per_s": 1153,
                                    "reimport_duplicates_per_s": 1051, "lookups": 200}) + "\n", "")),
    ]


@pytest.fixture(scope="module")
def page() -> str:
    history = run_all.HISTORY.read_text()
    images = {run_all.SUITE_PNG: run_all.SUITE_PNG, run_all.CURVES_PNG: run_all.CURVES_PNG}
    left = [s for s in run_all.steps(pg=True) if s.name == "fault-kill"]
    return run_all.render_page(INFO, _results(), history, images, left_out=left)


def test_header_names_the_machine_and_the_code(page):
    head = page.split("\n## ", 1)[0]
    assert head.startswith("# Benchmark results\n")
    for text in ("AMD EPYC (family 25, model 17)", "`znver4`", "| cores | 2 |", "3.11.2 / 2.13.0 / 0.27.0.post1",
                 "`abc1234` + uncommitted changes", "2026-12-03 10:00–10:24 UTC", "| 0.37 |"):
        assert text in head, text
    clean = run_all.render_header({**INFO, "dirty": False})
    assert "`abc1234` |" in clean and "uncommitted" not in clean


def test_a_section_per_step_with_its_command_wall_time_and_load(page):
    for i, (step, res) in enumerate(_results(), 1):
        section = page.split(f"\n## {i}. {step.title}\n", 1)[1].split("\n## ", 1)[0]
        assert step.about in section
        assert f"```sh\n{step.command}\n```" in section
        assert f"1-minute load average at its start {res.load_start:.2f}" in section
    assert "wall time 4 min 50 s" in page and "wall time 20 s" in page
    # the commands are relative to the repository root, as the page says
    assert "\n.venv/bin/opsearch bench --json" in page or f"\n{run_all.OPSEARCH} bench --json" in page


def test_tables_of_each_kind(page):
    assert "| dilated_conv1d | tcn_d8 | 985.4 | tuned record | 1,268.5 | F.conv1d (oneDNN) | 1.29× |" in page
    assert "| fft_conv1d | hyena_4k | 779.4 | default schedule | 800.3 | torch.fft | 1.03× |" in page
    assert "Geometric mean of PyTorch / opsearch over 2 workloads: 1.15×" in page
    assert "| demo TCN | 4 | 1.89x |" in page and "examples/x.py: failed: RuntimeError: boom" in page
    assert "| opsearch | 30.2 | 127.9 | 2,100.0 / 2,150.0 | 1,900.0 / 1,950.0 | 1,830.0 / 1,800.0 |" in page
    assert "1,900.0 / —" in page and "5.42× stock's trials per minute" in page
    assert "| sqlite | 20,000 | 0.760 | 5.200 | 5,251 | 1,131 | 1,153 | 1,051 |" in page


def test_failed_and_timed_out_steps_get_one_line_not_a_traceback(page):
    assert "Traceback" not in page and 'File "x.py"' not in page
    failed = [ln for ln in page.splitlines() if ln.startswith("**Failed")]
    assert failed == [("**Failed: exit status 1.** Last line of its error output: "
                       "`RuntimeError: the kernel cache is not writable`")]
    timed = [ln for ln in page.splitlines() if ln.startswith("**Not measured")]
    assert timed == [("**Not measured: stopped after its 6 min timeout.** Last line of its error output: "
                      "`stock: batch 2`")]


def test_unreadable_output_is_a_note_too():
    step = run_all.steps()[0]
    body = run_all.render_step_body(step, run_all.StepResult("2026-12-03 10:00:00", 1.0, 0.1, 0, "not json", ""))
    assert body.startswith("**Its output could not be read:**") and "\n" not in body


def test_images_history_and_the_benchmarks_left_out(page):
    assert "![opsearch's speedup over the best PyTorch implementation per workload](suite_speedups.png)" in page
    assert "](tuning_curves.png)" in page
    assert page.index("](tuning_curves.png)") > page.index("search_bench.py --example shift_conv2d:scnet_64")
    history = run_all.HISTORY.read_text()
    assert page.rstrip("\n").endswith(history.rstrip("\n"))
    assert "\n## Earlier machines\n\n" + history.rstrip("\n") in page
    assert "git history" in history and len(history.splitlines()) <= 15
    for script in ("model_interference.py", "stale_records.py"):
        assert f"- `benchmarks/{script}`: " in page
    for script in ("costmodel_bench.py", "transfer_bench.py"):  # run, on the corpus the tune steps build
        assert f"- `benchmarks/{script}`: " not in page
        assert any(f"benchmarks/{script}" in s.command for s in run_all.steps())
    assert "left out of this one (`--only`): `fault-kill`" in page
    # no image link for a plot that was not written
    bare = run_all.render_page(INFO, _results()[:1], "h\n")
    assert "suite_speedups.png" not in bare and bare.endswith("## Earlier machines\n\nh\n")


def test_the_page_speaks_of_the_project_and_machines(page):
    assert "session" not in page.lower()
    smoke = run_all.render_page(INFO, _results(), run_all.HISTORY.read_text(), smoke=True)
    assert smoke.startswith("# Benchmark results (smoke run") and "session" not in smoke.lower()


def test_steps_fit_the_budget_and_smoke_is_smaller():
    full, smoke = run_all.steps(), run_all.steps(smoke=True)
    assert [s.name for s in full] == [s.name for s in smoke]
    assert sum(s.estimate_min for s in full) <= 30
    assert sum(s.estimate_min for s in smoke) < sum(s.estimate_min for s in full)
    assert all(s.timeout_s > 60 * s.estimate_min for s in full)
    db = {False: None, True: None}
    for pg in db:
        db[pg] = next(s for s in run_all.steps(pg=pg) if s.name == "db").command
    assert "--pg" not in db[False] and "--pg" in db[True]
    # the cost-model and transfer steps read the database the corpus steps fill, after them
    names = [s.name for s in full]
    corpus = [s for s in full if s.name.startswith("corpus-")]
    assert len(corpus) == 2 and max(names.index(s.name) for s in corpus) < names.index("costmodel") < names.index("transfer")
    path = str(run_all.workdir(False) / "corpus.db")
    assert all(path in s.command for s in corpus + [full[names.index("costmodel")], full[names.index("transfer")]])
    with pytest.raises(SystemExit):
        run_all.select(full, ["no-such-step"])


def test_list_exits_0():
    p = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--list"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "benchmarks/search_bench.py --example dilated_conv2d:context_d4" in p.stdout


def test_torch_overhead_markdown(capsys):
    mod = _load("torch_overhead")
    best = {"direct TVM function (preallocated output)": 16.7, "opsearch.functional (eager, no grad needed)": 27.1}
    warm = [{"first_ms": 30.2, "first_cpu_ms": 20.0, "import_torch_ms": 900.0, "import_tvm_ms": 1200.0,
             "import_opsearch_ms": 80.0, "sqlalchemy_imported": False}] * 2
    mod._markdown({"working tree": (best, {"compile_ms": 812.0, "warm": warm})})
    out = capsys.readouterr().out
    assert "| opsearch.functional (eager, no grad needed) | 27.10 (+10.40) |" in out
    assert "| first call from the disk cache, wall (ms) | 30.2 |" in out
    assert run_all.render_markdown_output(out).count("| --- |") == 2


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    assert run_all.plot_suite(json.loads(_suite_json()), tmp_path / "s.png")
    assert run_all.plot_curves([json.loads(_search_json())], tmp_path / "c.png")
    for name in ("s.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tune_and_captioned_tables():
    """A corpus step's ``opsearch tune --json`` becomes a row per workload; the cost-model
    benchmark's markdown keeps each table under its caption."""
    step = next(s for s in run_all.steps() if s.name == "corpus-dilated_conv2d")
    out = json.dumps({"target": "llvm:znver4", "results": [
        {"op": "dilated_conv2d", "args": {"x": [1, 64, 56, 56], "weight": [64, 64, 3, 3], "bias": None, "dilation": [4, 4],
                                          "dtype": "float32"}, "trials_run": 32, "best_us": 1500.0, "default_us": 1800.0}]})
    body = run_all.render_step_body(step, run_all.StepResult("2026-12-03 10:00:00", 60.0, 0.5, 0, out, ""))
    assert "| dilated_conv2d x=1x64x56x56 weight=64x64x3x3 dilation=4x4 | 32 | 1,500.0 | 1,800.0 | 1.20× |" in body
    costmodel = _load("costmodel_bench")
    nan = float("nan")
    rows = [{"workload": "a", "n": 32, "ours": {"pairwise_accuracy": 0.7, "top1_recall": 1.0, "top5_recall": 1.0},
             "stock": {"pairwise_accuracy": 0.6, "top1_recall": 0.0, "top5_recall": nan}},
            {"workload": "b", "n": 30, "ours": {"pairwise_accuracy": 0.5, "top1_recall": 0.0, "top5_recall": 1.0},
             "stock": {"pairwise_accuracy": 0.55, "top1_recall": 1.0, "top5_recall": 1.0}}]
    text = "db line\n\n" + costmodel.md_table("1. held-out", ["ours", "stock"], rows) + "\n\nfeatures: 1.0 s\n"
    step = next(s for s in run_all.steps() if s.name == "costmodel")
    body = run_all.render_step_body(step, run_all.StepResult("2026-12-03 10:00:00", 60.0, 0.5, 0, text, ""))
    assert body.index("**1. held-out**") < body.index("| workload | n | ours: pair / top1 / top5 |")
    assert "| a | 32 | 0.700 / 1.000 / 1.000 | 0.600 / 0.000 / — |" in body
    assert "| **mean** | " in body and "features: 1.0 s" in body


def test_the_fresh_clone_figures_are_included_when_given():
    text = "`make demo`: exit 0, 257 s.\n"
    page = run_all.render_page(INFO, _results()[:1], "h\n", fresh_clone=text)
    head = "## The README's two commands on a fresh clone\n\n"
    assert head + text in page and page.index(head) < page.index("## Not run by this command")
    assert "fresh clone" not in run_all.render_page(INFO, _results()[:1], "h\n")


def test_search_summary_over_workloads(tmp_path):
    """``search_bench.py --summary``: stock's best over ours re-timed, trials to match stock's own
    best, and the trial at which the geo-mean over workloads reaches stock's best."""
    search = _load("search_bench")
    a = json.loads(_search_json())
    b = json.loads(_search_json())
    b["workload"] = "shift_conv2d:scnet_64"
    b["sides"]["stock"]["best_retimed_us"]["64"] = 900.0  # ours (1800) twice as slow as stock here
    b["sides"]["stock"]["best_own_us"]["64"] = 1000.0  # never reached by ours' curve (best 1830)
    a["sides"]["stock"]["best_retimed_us"]["64"] = 2000.0
    paths = []
    for name, rep in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(rep))
    out = search.summary([str(p) for p in paths])
    assert "| dilated_conv2d:context_d4 | 1.11 | 0.93 | 3 | 5.42 |" in out  # 2000/1800, 2000/2150@16; 2500>1900, 1830<=1900
    assert "| shift_conv2d:scnet_64 | 0.50 | 0.42 | not within 64 | 5.42 |" in out
    assert "| **geo-mean** | 0.75 | 0.62 | median 34 | 5.42 |" in out  # sqrt(1.111*0.5)
    assert "opsearch: the geo-mean over its 2 workloads" in out and "reaches 1.0 after more than 64 trials" in out
    assert search._geo_reach([[None, 4.0, 2.0], [3.0, 3.0, 1.0]], [2.0, 2.0]) == 3
    assert search._geo_reach([[None, 4.0]], [5.0]) == 2
    assert search.first_reaching([None, 5.0, 3.0], 4.0) == 3 and search.first_reaching([5.0], 4.0) is None
    assert search.first_reaching([5.0], None) is None and list(search.running_min([None, 5.0, None, 3.0, 4.0])) == [None, 5.0, 5.0, 3.0, 3.0]
    # with --fresh figures in one file: a column of stock's pick over ours as timed in fresh processes
    a["fresh"] = {"processes": 5, "checkpoint": 64, "errors": {},
                  "picks": {"opsearch#0": {"median_us": 1000.0, "per_process_us": [1000.0] * 5},
                            "stock#0": {"median_us": 1500.0, "per_process_us": [1500.0] * 5}}}
    paths[0].write_text(json.dumps(a))
    out = search.summary([str(p) for p in paths])
    assert "| stock@64 / opsearch@64 | stock@64 / opsearch@64, 5 fresh processes |" in out
    assert "| dilated_conv2d:context_d4 | 1.11 | 1.50 | 0.93 | 3 | 5.42 |" in out
    assert "| shift_conv2d:scnet_64 | 0.50 | - | 0.42 | not within 64 | 5.42 |" in out
    assert "| **geo-mean** | 0.75 | 1.50 | 0.62 | median 34 | 5.42 |" in out


def test_the_search_quality_section_is_included_when_given():
    text = "## Search quality on the seed operators: opsearch against stock MetaSchedule, 256 trials\n\n| a | b |\n"
    page = run_all.render_page(INFO, _results()[:1], "h\n", fresh_clone="f\n", search_quality=text)
    assert text in page and page.index(text) < page.index("## The README's two commands on a fresh clone")
    assert "Search quality on the seed" not in run_all.render_page(INFO, _results()[:1], "h\n")
