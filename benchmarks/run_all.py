"""Regenerate ``benchmarks/RESULTS.md``: the project's benchmarks in one command, today's tables.

    .venv/bin/python benchmarks/run_all.py                      # the default run (make bench): ~25 min on 2 cores
    .venv/bin/python benchmarks/run_all.py --list               # the steps, their budgets and commands
    .venv/bin/python benchmarks/run_all.py --only suite --only models --out /tmp/page.md
    .venv/bin/python benchmarks/run_all.py --smoke --out /tmp/results_smoke.md   # tiny budgets, minutes

Each step is one benchmark command, run from the repository root as its own subprocess (its own
process group) with its own timeout; its wall time is printed as it ends. The page then gets: a
header naming the machine and the code, one section per step (what it measures, the exact
command, its wall time and the load average at its start, its tables, or a one-line note when it
failed or timed out), two plots written next to the page (``suite_speedups.png``,
``tuning_curves.png``), the benchmarks this command leaves out and why, and at the end
``benchmarks/history.md`` (hand-maintained headline ratios of earlier machines) verbatim. The
README's two commands take ~25 minutes on a fresh clone, too long for this run: their latest
figures are kept by hand in ``benchmarks/fresh_clone.md``, which the page includes verbatim; so
are those of opsearch against stock MetaSchedule on every seed operator at 256 trials (about 90
minutes), in ``benchmarks/search_quality.md``.

Importing this module runs nothing. :func:`render_page` and the step renderers are pure
functions of the step results (``tests/test_results_page.py`` checks them without running a
benchmark); :func:`main` runs the steps, gathers the machine's details and writes the files. Its
exit status is 1 when a step failed or timed out (the page is written all the same).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"
HISTORY = ROOT / "benchmarks" / "history.md"
FRESH_CLONE = ROOT / "benchmarks" / "fresh_clone.md"
SEARCH_QUALITY = ROOT / "benchmarks" / "search_quality.md"  # a 90-minute run, kept by hand like FRESH_CLONE
SUITE_PNG = "suite_speedups.png"
CURVES_PNG = "tuning_curves.png"
PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# (OP:EXAMPLE, trials, checkpoints, estimated minutes): one workload at a real budget (256 trials:
# stock's 256 take ~7 min on 2 cores), one at 64
SEARCH_WORKLOADS = (("dilated_conv2d:context_d4", 256, "64,128,256", 9.0), ("shift_conv2d:scnet_64", 64, "16,32,64", 3.0))


def _rel(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when it lies inside it (commands on the page are
    run from there), else as given. Symlinks are kept: a venv's python is one."""
    p = os.path.abspath(path)
    r = os.path.relpath(p, ROOT)
    return p if r.startswith("..") else r


PY = _rel(sys.executable)
OPSEARCH = _rel(Path(sys.executable).with_name("opsearch"))


# ----------------------------------------------------------------------------- the steps
@dataclass(frozen=True)
class Step:
    """One benchmark command and how its output becomes markdown."""

    name: str  # for --only
    title: str  # the section's heading
    about: str  # what it measures and how to read it (fixed text)
    argv: tuple[str, ...]  # run from the repository root
    timeout_s: int
    estimate_min: float  # expected wall time on a 2-core VM
    kind: str  # renderer: "suite", "search", "dblines", "tune" or "markdown" (tables printed on stdout)
    json_out: str | None = None  # a file the command writes, read back after it ends
    image: tuple[str, str] | None = None  # (PNG name, alt text) shown at the end of the section

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass
class StepResult:
    """What one step's run left: the runner fills it, the renderers only read it."""

    started: str  # UTC, "YYYY-MM-DD HH:MM:SS"
    wall_s: float
    load_start: float  # 1-minute load average when it started
    returncode: int | None  # None: timed out
    stdout: str = ""
    stderr: str = ""
    json_text: str | None = None  # the contents of Step.json_out, if the command wrote it

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


SUITE_ABOUT = (
    "Every example workload of every operator, timed as opsearch (the record shipped in `schedules/` for this "
    "CPU where it runs faster than the default schedule here, else the default schedule) and as the fastest "
    "pure-PyTorch implementation of it (oneDNN, MKL, torch.fft, ...), each side in its own process per round, "
    "medians of the rounds, every output checked against a float64 reference. The database is empty, so only "
    "what ships is measured. Ratio = PyTorch's latency over opsearch's: above 1× opsearch is faster.")
MODELS_ABOUT = (
    "Whole models end to end (the demo's TCN and each model in `examples/`): PyTorch eager, the same model "
    "with opsearch's layers swapped in by `opsearch.optimize` (the records that ship, no tuning in the run) and "
    "torch.compile (Inductor, compile time excluded), alternating in one process per model, medians of the "
    "rounds. \"vs eager\" and \"vs torch.compile\" are the other side's latency over opsearch's: above 1× "
    "opsearch is faster.")
SEARCH_ABOUT = (
    "opsearch's tuner against stock MetaSchedule (`tune_tir` with its own space, search and XGBoost model; its "
    "builder's timeout raised to 120 s, without which every batch fails on 2 cores) on {workload}, both from "
    "an empty database with the same trial budget, one after the other in their own processes. Trials per "
    "minute is search speed (higher is better). The best latency after each checkpoint is each side's own "
    "measurement and the same schedules re-timed side by side in one process (lower is better; a single "
    "re-timing moves by about 15% on these VMs).")
OVERHEAD_ABOUT = (
    "What opsearch's PyTorch entry points add to each call, on a tiny dilated_conv2d (x 1×4×8×8) whose kernel "
    "takes microseconds: the fastest batch mean of each variant and its overhead over calling the compiled "
    "TVM function directly (lower is better). The second table is the first call in a fresh process whose "
    "kernel is already in the disk cache, with the imports before it timed apart.")
DB_ABOUT = (
    "The schedule database filled with {records} synthetic records (1,000 workloads × 2 targets, 2.5 kB "
    "traces): bulk insert, the best-record lookup that every kernel selection makes (median and 95th "
    "percentile), and export, import and re-import rates, on SQLite in a temporary directory{pg}. Rates are "
    "per second, higher is better; the lookup should stay under 5 ms.")
FAULT_ABOUT = (
    "A 64-trial tune of a small dilated_conv1d into a fresh SQLite file, SIGKILLed with its runner workers "
    "at {kills} random moment(s) and restarted each time, then run to completion. Read: corrupt databases and "
    "duplicate records should be 0, the completing run should measure only candidates not yet stored, and a "
    "kill should lose at most about one batch of work (the longest gap between stored batches).")

CORPUS_ABOUT = (
    "Fills a scratch database for the two steps after it: opsearch's tuner on every example workload of "
    "{op}, {per} trials each, from an empty database. Best = the best candidate re-timed like the default "
    "schedule (µs, lower is better).")
COSTMODEL_ABOUT = (
    "The cost model's ranking on the records the corpus steps stored, ours (XGBoost rank:pairwise) against "
    "stock MetaSchedule's XGBModel on the same splits and features. Held-out: train on every other workload, "
    "rank a workload never seen; online: train on the first half of a workload's measurements, rank the second "
    "half. pair = pairwise ranking accuracy, top1 / top5 = how often the truly fastest candidate is ranked "
    "first / in the first five (higher is better; random ranking gives about 0.5 pair accuracy).")
TRANSFER_ABOUT = (
    "A dilated_conv2d shape that is in no database (x 1×64×48×48, dilation 3), tuned cold from an empty database "
    "and warm from a copy of the corpus database (the cost model pretrained on the other shapes' records, the "
    "search seeded with the nearest shapes' best schedules). Read: how many trials each side needed to get within "
    "5% of the cold run's best; warm should need at most a third of cold's.")


NOT_RUN = [
    ("benchmarks/model_interference.py",
     ("a diagnostic: how much slower an opsearch layer runs inside a model than alone (thread-pool "
      "interference); run it when a model's end-to-end ratio falls below its layers' own.")),
    ("benchmarks/stale_records.py",
     ("a diagnostic: which shipped records a changed default schedule makes obsolete; run it after changing "
      "an operator's default.")),
]


def pg_available() -> bool:
    """Whether a PostgreSQL server answers on 127.0.0.1:5432 (then the database step times it too)."""
    if not shutil.which("pg_isready"):
        return False
    try:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def workdir(smoke: bool) -> Path:
    """Scratch files of a run (an empty database, the JSON the steps write): a fixed path, so the
    commands on the page are the ones that ran and can be pasted as they are."""
    return Path(tempfile.gettempdir()) / ("opsearch-results-smoke" if smoke else "opsearch-results")


def steps(smoke: bool = False, pg: bool = False, work: Path | None = None) -> list[Step]:
    """The benchmark steps in run order. The default budgets fit about 25 minutes on a 2-core VM
    (``estimate_min``, from the wall times of the same commands in earlier RESULTS pages); ``smoke``
    runs each with a tiny budget, to check the page's machinery in a few minutes."""
    work = work or workdir(smoke)
    db = f"sqlite:///{work / 'empty.db'}"
    out: list[Step] = []

    suite = ["--rounds", "1", "dilated_conv1d"] if smoke else ["--rounds", "3"]
    out.append(Step("suite", "The suite: opsearch against the best PyTorch implementation", SUITE_ABOUT,
                    (OPSEARCH, "bench", "--json", "--no-store", "--db", db, *suite),
                    timeout_s=300 if smoke else 1200, estimate_min=0.5 if smoke else 5.0, kind="suite",
                    image=(SUITE_PNG, "opsearch's speedup over the best PyTorch implementation per workload")))

    models = ["--only", "demo TCN", "--rounds", "1"] if smoke else []
    out.append(Step("models", "Whole models end to end: eager, opsearch and torch.compile", MODELS_ABOUT,
                    (PY, "benchmarks/model_bench.py", "--db", db, *models),
                    timeout_s=300 if smoke else 900, estimate_min=0.7 if smoke else 2.0, kind="markdown"))

    for i, (example, n_trials, n_cps, est) in enumerate(SEARCH_WORKLOADS):
        trials, cps, batch, stock_batch = ("8", "4,8", "4", "8") if smoke else (str(n_trials), n_cps, "32", "64")
        op, ex = example.split(":")
        js = str(work / f"search-{op}-{ex}.json")
        last = i == len(SEARCH_WORKLOADS) - 1
        out.append(Step(f"search-{ex}", f"Tuning against stock MetaSchedule: {op} {ex}, {trials} trials",
                        SEARCH_ABOUT.format(workload=f"{op} `{ex}`"),
                        (PY, "benchmarks/search_bench.py", "--example", example, "--trials", trials, "--checkpoints",
                         cps, "--batch", batch, "--stock-batch", stock_batch, "--json", js),
                        timeout_s=300 if smoke else int(120 * est), estimate_min=2.0 if smoke else est, kind="search",
                        json_out=js,
                        image=(CURVES_PNG, "best latency so far against trials, opsearch and stock MetaSchedule")
                        if last else None))

    corpus = work / "corpus.db"
    per = "4" if smoke else "32"
    for op, n, est in (("dilated_conv2d", 3, 1.5), ("dilated_conv1d", 2, 1.0)):
        out.append(Step(f"corpus-{op}", f"Tuning corpus: {op}, {per} trials per example workload",
                        CORPUS_ABOUT.format(op=op, per=per),
                        (OPSEARCH, "tune", op, "--example", "all", "--trials", str(n * int(per)),
                         "--trials-per-workload", per, "--db", f"sqlite:///{corpus}", "--json"),
                        timeout_s=300 if smoke else 600, estimate_min=0.5 if smoke else est, kind="tune"))
    out.append(Step("costmodel", "Cost model accuracy: ours against stock XGBModel", COSTMODEL_ABOUT,
                    (PY, "benchmarks/costmodel_bench.py", "--db", f"sqlite:///{corpus}", "--markdown",
                     *(["--min-records", "2"] if smoke else [])),
                    timeout_s=300 if smoke else 600, estimate_min=0.3 if smoke else 1.0, kind="markdown"))
    cold, warm = ("8", "4") if smoke else ("96", "32")
    out.append(Step("transfer", f"Transfer: a new shape, cold ({cold} trials) and warm ({warm})", TRANSFER_ABOUT,
                    (PY, "benchmarks/transfer_bench.py", "--pretrain-db", str(corpus), "--cold-trials", cold,
                     "--warm-trials", warm, "--markdown"),
                    timeout_s=300 if smoke else 600, estimate_min=0.7 if smoke else 2.0, kind="markdown"))

    calls = ["--calls", "20", "--batches", "2"] if smoke else ["--calls", "200", "--batches", "10"]
    out.append(Step("torch-overhead", "The PyTorch bridge: per-call overhead and first call", OVERHEAD_ABOUT,
                    (PY, "benchmarks/torch_overhead.py", *calls, "--markdown"),
                    timeout_s=180 if smoke else 300, estimate_min=0.5 if smoke else 0.6, kind="markdown"))

    records = "2000" if smoke else "20000"
    db_args = ["--records", records] + (["--lookups", "20"] if smoke else []) + (["--pg", PG_URL] if pg else [])
    out.append(Step("db", "The schedule database: lookups, inserts, export and import",
                    DB_ABOUT.format(records=f"{int(records):,}",
                                    pg=" and on PostgreSQL (a scratch database on 127.0.0.1:5432)" if pg else ""),
                    (PY, "benchmarks/db_bench.py", *db_args),
                    timeout_s=180 if smoke else 600, estimate_min=0.2 if smoke else (2.0 if pg else 1.0),
                    kind="dblines"))

    kills = "1" if smoke else "3"
    out.append(Step("fault-kill", "Killed tuning runs: what the database keeps", FAULT_ABOUT.format(kills=kills),
                    (PY, "benchmarks/fault_bench.py", "kill", "--kills", kills),
                    timeout_s=300 if smoke else 480, estimate_min=1.0 if smoke else 1.8, kind="markdown"))
    return out


# ----------------------------------------------------------------------------- rendering (pure)
def _fmt_wall(s: float) -> str:
    s = round(s)
    return f"{s} s" if s < 60 else f"{s // 60} min" if s % 60 == 0 else f"{s // 60} min {s % 60:02d} s"


def _x(v: float | None, digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}×"


def _us(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.1f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return (line[:297] + "...") if len(line) > 300 else line


def failure_note(step: Step, res: StepResult) -> str:
    """One line for a step that failed or timed out (never a traceback: the last line only)."""
    last = _last_line(res.stderr)
    said = f" Last line of its error output: `{last.replace('`', chr(39))}`" if last else " It wrote no error output."
    if res.timed_out:
        return f"**Not measured: stopped after its {_fmt_wall(step.timeout_s)} timeout.**{said}"
    return f"**Failed: exit status {res.returncode}.**{said}"


def suite_rows(data: dict) -> list[dict]:
    """One row per workload of ``opsearch bench --json``: opsearch's headline side (tuned record,
    else default schedule) against the PyTorch side."""
    rows = []
    for w in data["workloads"]:
        res = w["results"]
        head = w.get("headline")
        py = res.get("pytorch", {})
        ours = res.get(head, {}) if head else {}
        schedule = {"opsearch-tuned": "tuned record", "tvm-default": "default schedule"}.get(head, "—")
        if head == "opsearch-tuned" and str(ours.get("note", "")).startswith("default schedule"):
            schedule = "default schedule (the record ran slower here)"
        rows.append({"op": w["op"], "example": w["example"], "ours_us": ours.get("median_us"), "schedule": schedule,
                     "pytorch_us": py.get("median_us") if py.get("ok") else None,
                     "pytorch_impl": py.get("note", ""), "ratio": ours.get("speedup_vs_pytorch") if head else None,
                     "problem": "" if head else (ours.get("note") or py.get("note") or "not measured")})
    return rows


def render_suite(data: dict) -> str:
    lines = [("| operator | example | opsearch µs | opsearch ran | best PyTorch µs | PyTorch implementation | "
              "PyTorch / opsearch |"), "| --- | --- | ---: | --- | ---: | --- | ---: |"]
    for r in suite_rows(data):
        ratio = _x(r["ratio"]) if r["ratio"] is not None else f"— ({_cell(r['problem'])})"
        lines.append(f"| {r['op']} | {r['example']} | {_us(r['ours_us'])} | {r['schedule']} | {_us(r['pytorch_us'])} | "
                     f"{_cell(r['pytorch_impl'])} | {ratio} |")
    s = data.get("summary", {})
    gm, n = s.get("geomean_speedup_vs_pytorch"), s.get("workloads", 0)
    lines.append("")
    lines.append(f"- **Geometric mean of PyTorch / opsearch over {n} workloads: {_x(gm)}** "
                 f"(default schedules alone: {_x(s.get('geomean_default_vs_pytorch'))}; {s.get('tuned', 0)} of the workloads "
                 f"have a tuned record).")
    peak = data.get("peak_gflops")
    if peak:
        lines.append(f"- Measured fp32 peak {peak:.1f} GFLOP/s ({data.get('peak_method', '')}); "
                     f"{data.get('threads')} threads per side, {data.get('rounds')} round(s).")
    load = data.get("load_average") or []
    if len(load) == 2:
        lines.append(f"- 1-minute load average {load[0]:.1f} at the step's start, {load[1]:.1f} at its end.")
    return "\n".join(lines)


def render_search(data: dict) -> str:
    cps = [str(c) for c in data["checkpoints"]]
    names = {"opsearch": "opsearch", "stock": "stock `tune_tir`"}
    lines = ["| side | wall s | trials/min | " + " | ".join(f"best after {c}: own / re-timed µs" for c in cps) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(cps)]
    for side, d in data["sides"].items():
        cells = " | ".join(f"{_us(d['best_own_us'].get(c))} / {_us(d['best_retimed_us'].get(c))}" for c in cps)
        lines.append(f"| {names.get(side, side)} | {d['wall_s']:.1f} | {d['trials_per_min']:.1f} | {cells} |")
    lines.append("")
    lines.append(f"Trials {data['trials']}, batch {data['batch']} (stock {data['stock_batch']}), "
                 f"{data['rounds']} round(s).")
    lines.append("")
    for ours, vs in data.get("vs_stock", {}).items():
        lat = ", ".join(f"{v:.3f} after {c}" for c, v in vs.get("retimed_latency_ratio", {}).items())
        lines.append(f"- **{ours}: {_x(vs['trials_per_min_ratio'])} stock's trials per minute**; best latency re-timed, "
                     f"{ours} / stock (below 1: {ours} faster): {lat or 'not re-timed'}.")
    return "\n".join(lines)


def render_dblines(stdout: str) -> str:
    rows = [json.loads(ln) for ln in stdout.splitlines() if ln.strip().startswith("{")]
    if not rows:
        raise ValueError("no result lines")
    lines = [("| backend | records | best() median ms | best() p95 ms | insert /s | export /s | import /s | "
              "re-import (all duplicates) /s |"), "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['records']:,} | {r['best_median_ms']:.3f} | {r['best_p95_ms']:.3f} | "
                     f"{r['insert_per_s']:,} | {r['export_per_s']:,} | {r['import_per_s']:,} | "
                     f"{r['reimport_duplicates_per_s']:,} |")
    return "\n".join(lines)


def render_tune(data: dict) -> str:
    """``opsearch tune --json``: one row per workload tuned."""
    lines = ["| workload | trials run | best µs | default schedule µs | default / best |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in data["results"]:
        args = " ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in r["args"].items()
                        if v is not None and k != "dtype")
        ratio = r["default_us"] / r["best_us"] if r.get("default_us") and r.get("best_us") else None
        lines.append(f"| {r['op']} {args} | {r['trials_run']} | {_us(r.get('best_us'))} | {_us(r.get('default_us'))} | "
                     f"{_x(ratio)} |")
    return "\n".join(lines)


def render_markdown_output(stdout: str) -> str:
    """A script's markdown tables as they are; its other output lines under them as a short log."""
    tables, other, block = [], [], []
    for ln in stdout.splitlines():
        if ln.lstrip().startswith("|"):
            block.append(ln.strip())
            continue
        if block:
            tables.append("\n".join(block))
            block = []
        if ln.startswith("**"):  # a table's caption: kept in place, above its table
            tables.append(ln.strip())
            continue
        if ln.strip() and not ln.startswith("#"):
            other.append(ln.rstrip())
    if block:
        tables.append("\n".join(block))
    if not tables:
        raise ValueError("no markdown table in its output")
    text = "\n\n".join(tables)
    if other:
        shown = other[-30:]
        text += "\n\nIts other output:\n\n```text\n" + "\n".join(shown) + "\n```"
    return text


def render_step_body(step: Step, res: StepResult) -> str:
    """The tables of one step, or its one-line failure note."""
    if not res.ok:
        return failure_note(step, res)
    try:
        if step.kind == "suite":
            return render_suite(json.loads(res.stdout))
        if step.kind == "search":
            if res.json_text is None:
                raise ValueError(f"it wrote no {step.json_out}")
            return render_search(json.loads(res.json_text))
        if step.kind == "dblines":
            return render_dblines(res.stdout)
        if step.kind == "tune":
            return render_tune(json.loads(res.stdout))
        return render_markdown_output(res.stdout)
    except Exception as e:  # noqa: BLE001 - one unreadable output must not lose the page
        return f"**Its output could not be read:** {type(e).__name__}: {_cell(str(e).splitlines()[0] if str(e) else '')}"


def _time_range(start: str, end: str) -> str:
    (d0, t0), (d1, t1) = start.split(" "), end.split(" ")
    return f"{d0} {t0[:5]}–{t1[:5]} UTC" if d0 == d1 else f"{d0} {t0[:5]} UTC – {d1} {t1[:5]} UTC"


def render_header(info: dict) -> str:
    cpu = info.get("cpu_model") or "unknown"
    if info.get("cpu_family") or info.get("cpu_model_number"):
        cpu += f" (family {info.get('cpu_family', '?')}, model {info.get('cpu_model_number', '?')})"
    commit = f"`{info.get('commit') or 'unknown'}`" + (" + uncommitted changes" if info.get("dirty") else "")
    rows = [("CPU", cpu), ("LLVM mcpu", f"`{info.get('mcpu') or 'unknown'}`"), ("cores", str(info.get("cores", "?"))),
            ("Python / torch / apache-tvm", f"{info.get('python', '?')} / {info.get('torch', '?')} / {info.get('tvm', '?')}"),
            ("code (git commit)", commit),
            ("run", _time_range(info["started"], info["ended"])),
            ("1-minute load average before the run", f"{info.get('load_before', float('nan')):.2f}")]
    return "\n".join(["| machine and run | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)])


def render_page(info: dict, results: list[tuple[Step, StepResult]], history: str | None,
                images: dict[str, str] | None = None, smoke: bool = False,
                left_out: list[Step] | None = None, fresh_clone: str | None = None,
                search_quality: str | None = None) -> str:
    """The whole page. ``images``: PNG name -> link path for the plots that were written;
    ``left_out``: default steps this run did not run (``--only``); ``fresh_clone``: the text of
    :data:`FRESH_CLONE` (the README's commands on a fresh clone), shown after the steps;
    ``search_quality``: the text of :data:`SEARCH_QUALITY` (opsearch against stock MetaSchedule on
    every seed operator at 256 trials, too long for this command), shown before it."""
    images = images or {}
    out = ["# Benchmark results" + (" (smoke run: tiny budgets, not results)" if smoke else ""), ""]
    make = "`make bench`" + (" with `--smoke`" if smoke else "")
    out.append(f"Written by {make} (`{PY} benchmarks/run_all.py`): every table below was measured on the machine "
               "in the header, in one run, by the command shown above it (run from the repository root). "
               "These VMs are shared and noisy: read ratios measured within one step, not absolute times "
               "across steps. Earlier machines' headline ratios are at the end.")
    if smoke:
        out += ["", ("**Smoke run:** every step ran with a tiny budget to check this page's machinery; "
                     "its figures are not results.")]
    out += ["", render_header(info), ""]
    if left_out:
        out += ["Steps of the default run left out of this one (`--only`): "
                + ", ".join(f"`{s.name}`" for s in left_out) + ".", ""]
    for i, (step, res) in enumerate(results, 1):
        when = (f"Started {res.started} UTC; wall time {_fmt_wall(res.wall_s)}; 1-minute load average at its start "
                f"{res.load_start:.2f}.")
        out += [f"## {i}. {step.title}", "", step.about, "", "```sh", step.command, "```", "", when, "",
                render_step_body(step, res), ""]
        if step.image and step.image[0] in images:
            out += [f"![{step.image[1]}]({images[step.image[0]]})", ""]
    if search_quality is not None:
        out += [search_quality.rstrip("\n"), ""]
    if fresh_clone is not None:
        out += ["## The README's two commands on a fresh clone", "", fresh_clone.rstrip("\n"), ""]
    out += ["## Not run by this command", ""]
    out += [f"- `{path}`: {why}" for path, why in NOT_RUN] + [""]
    out += ["## Earlier machines", ""]
    out.append(history.rstrip("\n") if history is not None else f"(`{_rel(HISTORY)}` was not found.)")
    return "\n".join(out).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- plots
def _plain_log_axis(axis, fmt: str, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """Log-scale ticks at ``subs`` of each decade, written as plain numbers (not powers of ten)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt.format(v)))


def plot_suite(data: dict, path: Path) -> bool:
    """Horizontal bars, log scale, of PyTorch / opsearch per workload, with the 1x line."""
    rows = [r for r in suite_rows(data) if r["ratio"]]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows.sort(key=lambda r: r["ratio"])
    labels = [f"{r['op']} {r['example']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.32 * len(rows)))
    colors = ["#2e7d32" if v >= 1 else "#c62828" for v in ratios]
    ax.barh(range(len(rows)), [v - 1 for v in ratios], left=1, color=colors, height=0.7)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=1)
    for y, v in enumerate(ratios):
        ax.text(v * (1.06 if v >= 1 else 1 / 1.06), y, f"{v:.2f}×", va="center", ha="left" if v >= 1 else "right",
                fontsize=7)
    lo, hi = min(ratios + [1.0]), max(ratios + [1.0])
    ax.set_xlim(lo / 1.8, hi * 2.2)
    _plain_log_axis(ax.xaxis, "{:g}×")
    gm = data.get("summary", {}).get("geomean_speedup_vs_pytorch")
    ax.set_xlabel("PyTorch latency / opsearch latency (log scale; right of 1×: opsearch faster)")
    ax.set_title(f"opsearch vs the best PyTorch implementation on {data.get('target', '?')}"
                 + (f": geometric mean {gm:.2f}×" if gm else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_curves(runs: list[dict], path: Path) -> bool:
    """Best latency so far against trials, one panel per workload, one line per side."""
    runs = [r for r in runs if r.get("sides")]
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"opsearch": "opsearch", "stock": "stock MetaSchedule"}
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), squeeze=False)
    for ax, run in zip(axes[0], runs):
        for side, d in run["sides"].items():
            ys = [float("nan") if v is None else v for v in d.get("curve_us", [])]
            if ys:
                ax.step(range(1, len(ys) + 1), ys, where="post", label=names.get(side, side), linewidth=1.6)
        ax.set_title(f"{run.get('workload', '').replace(':', ' ')}: each side's own measurements", fontsize=10)
        ax.set_xlabel("trials")
        ax.set_yscale("log")
        _plain_log_axis(ax.yaxis, "{:,.0f}", (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
        ax.set_ylabel("best latency so far, µs (log scale)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- running
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def run_step(step: Step) -> StepResult:
    """Run one step in its own process group; on timeout the whole group is killed."""
    if step.json_out and os.path.exists(step.json_out):
        os.remove(step.json_out)
    started, load = _now(), os.getloadavg()[0]
    t0 = time.monotonic()
    p = subprocess.Popen(list(step.argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=step.timeout_s)
        rc: int | None = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        rc = None
    wall = time.monotonic() - t0
    js = Path(step.json_out).read_text() if step.json_out and os.path.exists(step.json_out) else None
    return StepResult(started, wall, load, rc, out or "", err or "", js)


def _run(cmd: list[str], timeout: float = 60) -> str:
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                           env=dict(os.environ, LC_ALL="C"))
        return p.stdout if p.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info() -> dict:
    """The machine and the code: CPU, LLVM's name for it, cores, versions, the git commit."""
    from importlib import metadata

    from opsearch.targets import host_cores, host_cpu_model  # no TVM import

    info: dict = {"cpu_model": host_cpu_model()}
    for ln in _run(["lscpu"]).splitlines():
        key, _, val = ln.partition(":")
        if key.strip() == "CPU family":
            info["cpu_family"] = val.strip()
        elif key.strip() == "Model":
            info["cpu_model_number"] = val.strip()
        elif key.strip() == "Model name" and not info.get("cpu_model"):
            info["cpu_model"] = val.strip()
    # opsearch.targets.host_cpu imports TVM: asked in a child, so this process stays light while steps run
    mcpu = _run([sys.executable, "-c", "from opsearch.targets import host_cpu; print(host_cpu())"], timeout=180)
    info["mcpu"] = mcpu.strip().splitlines()[-1] if mcpu.strip() else None
    info["cores"] = host_cores()
    info["python"] = platform.python_version()
    for key, dist in (("torch", "torch"), ("tvm", "apache-tvm")):
        try:
            info[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[key] = "not installed"
    info["commit"] = _run(["git", "rev-parse", "--short", "HEAD"]).strip() or None
    info["dirty"] = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]).strip())
    return info


def select(all_steps: list[Step], only: list[str] | None) -> list[Step]:
    if not only:
        return all_steps
    known = {s.name for s in all_steps}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise SystemExit(f"unknown step(s): {', '.join(unknown)} (see --list: {', '.join(sorted(known))})")
    return [s for s in all_steps if s.name in only]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help=f"page to write (default {_rel(DEFAULT_OUT)}; with --smoke, "
                                              f"{workdir(True) / 'RESULTS.md'})")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this step (repeatable; see --list)")
    ap.add_argument("--smoke", action="store_true", help="every step with a tiny budget (checks the page, minutes)")
    ap.add_argument("--list", action="store_true", help="print the steps and their commands, run nothing")
    args = ap.parse_args(argv)

    pg = pg_available()
    all_steps = steps(args.smoke, pg)
    chosen = select(all_steps, args.only)
    if args.list:
        total = sum(s.estimate_min for s in all_steps)
        print(f"{len(all_steps)} steps{' (smoke budgets)' if args.smoke else ''}, about {total:.0f} min in all on a "
              f"2-core VM; commands run from {ROOT}:")
        for s in all_steps:
            print(f"\n{s.name}  (~{s.estimate_min:g} min, timeout {_fmt_wall(s.timeout_s)})\n  {s.command}")
        print("\nnot run by this command: " + ", ".join(p for p, _ in NOT_RUN))
        return 0

    out = args.out or (workdir(True) / "RESULTS.md" if args.smoke else DEFAULT_OUT)
    out = out.resolve()
    work = workdir(args.smoke)
    shutil.rmtree(work, ignore_errors=True)  # this command's own scratch directory
    work.mkdir(parents=True)
    info = {"load_before": os.getloadavg()[0], "started": _now()}
    info.update(machine_info())
    print(f"{info.get('cpu_model')} ({info.get('mcpu')}), {info.get('cores')} cores; load average "
          f"{info['load_before']:.2f}; {len(chosen)} step(s), about {sum(s.estimate_min for s in chosen):.0f} min",
          flush=True)
    results: list[tuple[Step, StepResult]] = []
    for i, step in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {step.name}: {step.command}", flush=True)
        res = run_step(step)
        state = "ok" if res.ok else ("timed out" if res.timed_out else f"exit {res.returncode}")
        print(f"[{i}/{len(chosen)}] {step.name}: {_fmt_wall(res.wall_s)} ({state}; ~{step.estimate_min:g} min "
              f"expected)", flush=True)
        results.append((step, res))
    info["ended"] = _now()

    images: dict[str, str] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    suite = next((r for s, r in results if s.kind == "suite" and r.ok), None)
    try:
        if suite and plot_suite(json.loads(suite.stdout), out.parent / SUITE_PNG):
            images[SUITE_PNG] = SUITE_PNG
    except Exception as e:  # noqa: BLE001 - a plot must not lose the page
        print(f"suite plot not written: {type(e).__name__}: {e}", file=sys.stderr)
    try:
        runs = [json.loads(r.json_text) for s, r in results if s.kind == "search" and r.ok and r.json_text]
        if runs and plot_curves(runs, out.parent / CURVES_PNG):
            images[CURVES_PNG] = CURVES_PNG
    except Exception as e:  # noqa: BLE001
        print(f"tuning-curve plot not written: {type(e).__name__}: {e}", file=sys.stderr)

    history = HISTORY.read_text() if HISTORY.exists() else None
    fresh = FRESH_CLONE.read_text() if FRESH_CLONE.exists() and not args.smoke else None
    left_out = [s for s in all_steps if s not in chosen]
    quality = SEARCH_QUALITY.read_text() if SEARCH_QUALITY.exists() and not args.smoke else None
    out.write_text(render_page(info, results, history, images, args.smoke, left_out, fresh, quality))
    print(f"wrote {out}" + "".join(f", {out.parent / name}" for name in images) + f" (scratch files in {work})")
    failed = [s.name for s, r in results if not r.ok]
    if failed:  # the page is written all the same, with a note in each such section
        print(f"failed or timed out: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
