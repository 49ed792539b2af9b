"""Confirming a search's finalists: its fastest records, timed again side by side.

A search keeps the candidate measured fastest among hundreds, each timed once in its batch. On a
shared machine that is partly the one measured luckiest (the winner's curse): its own measurement
is the minimum of many noisy ones, and a runner-up measured on a busier second can be the faster
kernel. After the search, :func:`confirm_finalists` builds a workload's ``k`` fastest ``ok``
records again and times them in one process, alternating between them for several rounds, and
stores each one's confirmation samples as its timings. The database's best (what ``opsearch.load``
serves) is then the finalist that was fastest measured beside the others, not alone.

Only the local CPU runner's records are confirmed (the tuner calls this for LLVM targets without
RPC, when ``TuneConfig.confirm`` is set); a finalist that no longer builds is left as it is, for
the tuner's verification to mark. It is off by default: on a 2-core znver4 VM (2026-12-06, four
workloads, three seeds each), re-timed in a separate process, the confirmed pick was never clearly
faster than the search's own and was 13-41% slower on context_d4 in every seed
(benchmarks/RESULTS.md). Timed inside the tuning process, finalists rank worse than in the
search's fresh worker processes; timing them in such a worker is the next thing to try.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass

from ..ops import sample_inputs
from ..ops.spec import Workload
from ..targets import TargetSpec

log = logging.getLogger(__name__)

MIN_TRIALS = 32  # runs that measured fewer candidates of a workload than this are not confirmed


@dataclass(frozen=True)
class Confirmed:
    """One finalist: its record id, its latency before and after the confirmation (µs)."""

    record_id: int
    before_us: float
    after_us: float


def confirm_finalists(db, wl: Workload, target: TargetSpec, k: int = 4, rounds: int = 5) -> list[Confirmed]:
    """Time the ``k`` fastest ok records of ``wl`` on ``target`` again, side by side, and store
    each one's per-round samples (µs) as its ``run_us`` (``mean_us`` their mean). Returns the
    finalists fastest first by their new latency; nothing is stored when fewer than two build."""
    from ..db.replay import replay
    from ..runtime.kernels import build, time_alternating

    finalists = db.top_k(wl, target, k)
    kernels, before = {}, {}
    for rec in finalists:
        try:
            kernels[str(rec.id)] = build(replay(rec.trace, wl), wl, target)
            before[str(rec.id)] = rec.mean_us
        except Exception as e:  # noqa: BLE001 - verification marks it; the others are still compared
            log.warning("finalist %s of %s not confirmed: %s", rec.id, wl.op,
                        (str(e).strip().splitlines() or [type(e).__name__])[-1])
    if len(kernels) < 2:
        return []
    samples = time_alternating(kernels, list(sample_inputs(wl).values()), rounds)
    for rid, run_us in samples.items():
        db.retime(int(rid), run_us)
    out = [Confirmed(int(rid), before[rid], statistics.fmean(v)) for rid, v in samples.items()]
    return sorted(out, key=lambda c: (c.after_us, c.record_id))
