"""What steers one tuning run and what it reports: :class:`TuneConfig` (budgets, stops, search and
measuring settings), the per-workload progress the tuner keeps and :class:`TuneResult`, its
outcome per workload. Plain data with validation; nothing here runs a search."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import OpsearchError
from ..ops.spec import Workload
from .runner import MeasureConfig


@dataclass(frozen=True)
class TuneConfig:
    """Everything that steers one tuning run.

    ``trials`` is the total budget over the given workloads, counted from the database (records
    already there count as spent); ``trials_per_workload`` caps each workload. ``time_limit_s``
    stops after the batch in flight once exceeded; ``patience`` stops a workload after that many
    trials without a better candidate. ``measure=False`` (CUDA without a GPU) compiles candidates
    and stores them as unmeasured. ``rpc`` is ``HOST:PORT:KEY`` of a TVM RPC tracker.
    ``transfer`` seeds the search of a workload with the best schedules of that many nearest tuned
    workloads of the same operator (0: off). ``pretrain`` trains the cost model on every measured
    record of the target kind before the search starts (False: it starts cold and learns only
    from this run's measurements); the two are separate so their effects can be measured apart.
    ``include_default`` measures the operator's default schedule as a workload's first trial
    (CPU, local runner), so the best record is never slower than the untuned kernel and the
    search is seeded with it. ``include_shipped`` then measures the workload's shipped record
    (``schedules/``, the one this target would be served: its own file first, then CPUs with the
    same vector width) as its next trial: on a machine with no records of its own the search
    starts from a tuned schedule instead of random ones, and the run's best is never slower than
    what the user was already served. Both only when the workload has no record yet.
    ``include_shipped`` also starts the cost model from the shipped model
    (``schedules/costmodel-<kind>.json``) when pretraining finds nothing to train on.
    ``confirm`` (CPU, local runner): after the search, the fastest ``confirm`` records of each
    workload that this run measured at least ``opsearch.search.confirm.MIN_TRIALS`` candidates of
    are built again and timed side by side, alternating, in several fresh processes, and those
    timings replace their own (see ``opsearch.search.confirm``). None (the default): 4 finalists
    (``confirm.AUTO_FINALISTS``) of each workload measured at least 128 times in this run
    (``confirm.AUTO_MIN_TRIALS``), none for shorter runs or those stopped by ``time_limit_s``;
    0: off. On a znver4 VM the confirmed picks of five workloads (two seeds each) were
    0.99-1.10x as fast as the search's own, judged in five more fresh processes; on a znver5 VM,
    nine workloads, within -1%..+3% (benchmarks/RESULTS.md); it costs 20-60 s per workload.
    ``refine`` is the share of each workload's trials in this run (when it has at least
    ``opsearch.search.refine.MIN_BUDGET``) kept for the end of its search, which then measures
    one-step neighbours of its fastest records instead of the evolution's proposals
    (``opsearch.search.refine``; 0: off); with it on, refinement also takes batches earlier
    whenever 32 of the evolution's proposals pass without a faster best, for as long as they make
    the best faster (``opsearch.search.strategy.STALL_TRIALS``).
    ``population`` is the evolution's population for a workload of one tiled stage; two
    stages get four times as many, more stages at most 48 (``opsearch.search.space.population``).
    ``measure_config`` sets how the local runner times candidates, including its screening
    (``MeasureConfig.screen_ratio``: full timing only for candidates near the best; None times
    every candidate fully).
    """

    trials: int = 64
    trials_per_workload: int | None = None
    time_limit_s: float | None = None
    patience: int | None = None
    batch: int = 16
    population: int = 128
    measure: bool = True
    rpc: str | None = None
    verify: bool = True
    confirm: int | None = None
    refine: float = 0.25
    seed: int = 0
    transfer: int = 3
    pretrain: bool = True
    include_default: bool = True
    include_shipped: bool = True
    measure_config: MeasureConfig = field(default_factory=MeasureConfig)

    def check(self) -> None:
        if self.trials <= 0:
            raise OpsearchError(f"trials must be positive, got {self.trials}")
        if self.trials_per_workload is not None and self.trials_per_workload <= 0:
            raise OpsearchError(f"trials per workload must be positive, got {self.trials_per_workload}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise OpsearchError(f"time limit must be positive, got {self.time_limit_s}")
        if self.batch <= 0:
            raise OpsearchError(f"batch must be positive, got {self.batch}")
        if self.confirm is not None and (self.confirm < 0 or self.confirm == 1):
            raise OpsearchError(f"confirm must be 0 (off) or at least 2 finalists, got {self.confirm}")
        if not 0 <= self.refine < 1:
            raise OpsearchError(f"refine must be a share of the trials from 0 (off) to below 1, got {self.refine}")
        if self.transfer < 0:
            raise OpsearchError(f"transfer must be zero or positive, got {self.transfer}")
        self.measure_config.check()


@dataclass
class WorkloadProgress:
    workload: Workload
    spent_before: int
    budget: int  # trials this run may use for this workload
    measured: int = 0  # trials used in this run
    cached: int = 0  # of which answered from the database (measured by an earlier run)
    failed: int = 0
    best_us: float | None = None
    since_best: int = 0
    done: bool = False


@dataclass(frozen=True)
class TuneResult:
    """Outcome for one workload: the verified best record (or None), and how many trials."""

    workload: Workload
    target: str
    best: object  # opsearch.db.records.Record | None
    trials_before: int
    trials_run: int
    cached: int  # trials answered from earlier measurements instead of measuring again
    failed: int
    verified: bool | None
    stopped: str  # "budget", "time limit", "early stop", "interrupted", "already tuned", "space exhausted"


Progress = Callable[[dict], None]
