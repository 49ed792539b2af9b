"""Confirming a search's finalists: its fastest records, timed again side by side in fresh
processes.

A search keeps the candidate measured fastest among hundreds, each timed once in its batch. On a
shared machine that is partly the one measured luckiest (the winner's curse): its own measurement
is the minimum of many noisy ones, and a runner-up measured on a busier second can be the faster
kernel. After the search, :func:`confirm_finalists` takes a workload's ``k`` fastest ``ok``
records and times them again in ``processes`` fresh Python processes, one after another (each
builds them from their traces and times them alternating for several rounds, as
:func:`opsearch.runtime.kernels.time_traces` does), and stores each one's per-process medians as
its timings. A kernel's speed also depends on the process it runs in (measured, not explained): on
a 2-core znver4 VM (2026-12-06) the same kernel re-timed 9-55% away from its own measurement in the
search, more than the kernels near the best differ (much of that was the search's runner, whose
workers then pinned TVM's threads: ``opsearch.search.runner``), and on a znver5 VM one kernel's
medians in five fresh processes spread by up to 30%. Timed in the tuning process itself, finalists ranked worse
than in a separate one (benchmarks/RESULTS.md); hence fresh processes, and several.

The database's best (what ``opsearch.load`` serves) must then be a finalist: a record that was
not confirmed keeps its own (lucky) measurement and could otherwise rank ahead of the confirmed
ones. So while an unconfirmed record is faster than the confirmed winner, it is confirmed
against the winner in another pass (at most ``passes``).

Only the local CPU runner's records are confirmed (the tuner calls this for LLVM targets without
RPC); a finalist that no longer builds is left as it is, for the tuner's verification to mark.
By default (``TuneConfig.confirm`` None) the tuner confirms ``AUTO_FINALISTS`` finalists of each
workload it measured at least ``AUTO_MIN_TRIALS`` candidates of, where the winner's curse bites:
on a 2-core znver4 VM (2026-12-07, five workloads, two seeds each, judged in five more fresh
processes) the confirmed picks were 0.99-1.10x the search's own (condconv2d effnet_3x3_e8 1.10:
one seed's search had kept a candidate 19% slower than the operator's default schedule), and on
a znver5 VM (nine workloads, one seed) within -1%..+3%; on an emeraldrapids VM (seven workloads,
two seeds) within -3%..+1%, once keeping a kernel 5% slower than the search's own. The CLI's ``--confirm`` help names both
constants as literals (importing this package there would slow ``opsearch --help``); a test
keeps them equal.
It costs 20-60 s per workload; a run of a few dozen trials (the demo's, the tests') skips it,
and so does a workload stopped by the run's time limit, which it would overrun.

``python -m opsearch.search.confirm`` is the fresh process: JSON on stdin (``op``, ``args``,
``target``, ``traces``: name -> trace, ``rounds``), JSON on stdout (``samples``: name -> per-round
µs, and ``errors``: name -> message for the traces that did not build).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import OpsearchError
from ..ops.spec import Workload
from ..targets import TargetSpec

if TYPE_CHECKING:
    from ..db.records import Record

log = logging.getLogger(__name__)

MIN_TRIALS = 32  # runs that measured fewer candidates of a workload than this are not confirmed
AUTO_FINALISTS = 4  # finalists confirmed by default (TuneConfig.confirm None) ...
AUTO_MIN_TRIALS = 128  # ... for each workload of which the run measured at least this many candidates
PROCESSES = 3  # fresh processes each finalist is timed in
ROUNDS = 5  # alternating rounds in each
PASSES = 3  # confirmation passes at most (see the module docstring)
PROCESS_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Confirmed:
    """One finalist: its record id, its latency before and after the confirmation (µs)."""

    record_id: int
    before_us: float
    after_us: float


def _child_env() -> dict:
    """This environment, with the directory holding this ``opsearch`` first on PYTHONPATH (the
    child must import the same package, wherever the parent found it)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def time_in_fresh_processes(wl: Workload, target: TargetSpec, traces: dict[str, str], processes: int = PROCESSES,
                            rounds: int = ROUNDS) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Median latency (µs) of each schedule (name -> trace JSON) in each of ``processes`` fresh
    processes, run one after another; and the error of each schedule that did not build."""
    request = json.dumps({"op": wl.op, "args": wl.json_args(), "target": target.name, "traces": traces,
                          "rounds": rounds})
    medians: dict[str, list[float]] = {name: [] for name in traces}
    errors: dict[str, str] = {}
    for _ in range(processes):
        try:
            p = subprocess.run([sys.executable, "-m", __name__], input=request, capture_output=True, text=True,
                               timeout=PROCESS_TIMEOUT_S, env=_child_env())
        except subprocess.TimeoutExpired:
            raise OpsearchError(f"timing the finalists of {wl.op} in a fresh process took over "
                                f"{PROCESS_TIMEOUT_S:.0f} s") from None
        if p.returncode != 0:
            tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
            raise OpsearchError(f"timing the finalists of {wl.op} in a fresh process failed: {tail}")
        out = json.loads(p.stdout.strip().splitlines()[-1])
        errors.update(out["errors"])
        for name, samples in out["samples"].items():
            medians[name].append(statistics.median(samples))
    return {name: v for name, v in medians.items() if v and name not in errors}, errors


def confirm_finalists(db, wl: Workload, target: TargetSpec, k: int = 4, processes: int = PROCESSES,
                      rounds: int = ROUNDS, passes: int = PASSES) -> list[Confirmed]:
    """Time the ``k`` fastest ok records of ``wl`` on ``target`` again in ``processes`` fresh
    processes and store each one's per-process medians (µs) as its ``run_us`` (``mean_us`` their
    mean). While records not confirmed here are faster than the winner so far, the ``k - 1``
    fastest of them are confirmed against it (at most ``passes`` passes in all). Returns every
    confirmed finalist, fastest first by its new latency; nothing is stored when fewer than two
    build."""
    done: dict[int, Confirmed] = {}
    recs: dict[int, Record] = {}  # the confirmed records, by id
    failed: set[int] = set()  # finalists that did not build
    winner = None  # the fastest confirmed record so far
    todo = db.top_k(wl, target, k)
    for _ in range(passes):
        group = {str(r.id): r for r in todo + ([winner] if winner is not None else [])}
        if len(group) < 2:
            break
        medians, errors = time_in_fresh_processes(wl, target, {rid: r.trace for rid, r in group.items()},
                                                  processes, rounds)
        for rid, msg in errors.items():  # verification marks it; the others are still compared
            log.warning("finalist %s of %s not confirmed: %s", rid, wl.op, msg)
        if len(medians) < 2:
            break
        for rid, run_us in medians.items():
            rec = group[rid]
            db.retime(rec.id, run_us)
            before = done[rec.id].before_us if rec.id in done else rec.mean_us
            done[rec.id], recs[rec.id] = Confirmed(rec.id, before, statistics.fmean(run_us)), rec
        top = min(done.values(), key=lambda c: (c.after_us, c.record_id))
        winner = recs[top.record_id]  # can be one of an earlier pass, if this pass's winner re-timed slower
        failed.update(int(rid) for rid in errors)
        todo = [r for r in db.top_k(wl, target, k + len(done) + len(failed))
                if r.id not in done and r.id not in failed and r.mean_us < top.after_us][:k - 1]
        if not todo:
            break
    return sorted(done.values(), key=lambda c: (c.after_us, c.record_id))


def _main() -> None:
    from .. import ops
    from ..runtime.kernels import time_traces
    from ..targets import resolve

    req = json.loads(sys.stdin.read())
    wl = ops.get(req["op"]).workload(**req["args"])
    samples, errors = time_traces(wl, req["traces"], resolve(req["target"]), req["rounds"])
    print(json.dumps({"samples": samples, "errors": errors}))


if __name__ == "__main__":
    _main()
