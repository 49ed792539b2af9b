"""The search strategy of one tuning task: MetaSchedule's evolutionary search, capped at the
workload's own trial budget, and without genetic iterations while the cost model knows nothing.

MetaSchedule gives every task of a run one trial cap (``max_trials_per_task``); workloads that
resume with different amounts already spent, or whose first trials (default, shipped record)
differ, have different budgets left. Stopping a task from a measure callback races the task
scheduler (it may pick the task it just joined and fail its "not terminated" check), so the cap
is given to the search itself: it proposes at most the workload's budget and then reports that
it is done, which MetaSchedule handles by ending the task.

An untrained cost model scores at random, so evolving the population under it only replays
mutated traces to select among them at random: for context_d4 that was ~2.5 s of a 24 s, 64-trial
run, on both cores. While ``untrained()`` says so, the evolution runs with no genetic iteration
(its initial population, sampled from the space and the database's best, is scored once and
picked from), and with the configured number again once the model has data. The same
``EvolutionarySearch`` instance serves both, so it keeps one record of what it has proposed.

The last ``refine_trials`` of the task's budget (or the last ``shared_refine`` of the run's, for
runs of several tasks sharing one budget) go to a :class:`~opsearch.search.refine.Refiner` (one-step
neighbours of the best records, ``refine.py``) while it has unmeasured neighbours to offer; the
evolution is told of those batches' results too, so its count of trials stays the task's.

Before that, refinement also takes over whenever the evolution stalls: once ``STALL_TRIALS`` of
its proposals have passed without making the fastest candidate this search measured ``STALL_GAIN``
faster (the operator's default schedule and the shipped record, measured before the search, do
not count), the next batch is a refinement batch, and so is every next one while they keep making
the best faster; then the evolution goes on, seeded with the refined records. Where the cost
model ranks a round's candidates at chance (condconv2d mbv2_dw_e8: pairwise 0.39-0.52 per round
on a znver4 VM, 2026-12-08, ``benchmarks/costmodel_bench.py --rounds 32``), the evolution's
proposals are little better than random samples around its best records, and the one-step moves
of refinement were what made the best faster (one search: 281 -> 219 us in its last 64 trials,
after 192 trials of evolution). With stalls handed over so, mbv2_dw_e8's 256-trial picks on that
VM ran 179-221 us (geo-mean 204) against 214-238 us (224) without, four seeds each, timed side by
side in five fresh processes; timed again later, 171 against 177 us (benchmarks/search_quality.md).
"""

from __future__ import annotations

import math

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.search_strategy import EvolutionarySearch, PySearchStrategy


STALL_TRIALS = 32  # evolution proposals without a better best after which refinement takes a batch; 0: off
STALL_GAIN = 0.01  # how much faster (a share) a candidate must be than the best to count as better
REDRAWS = 3  # evolution searches tried for a batch when every proposal was refinement's already


def _field(obj, name: str):
    for cls in type(obj).__mro__:
        if name in cls.__dict__:
            return cls.__dict__[name]
    raise AttributeError(name)


@derived_object
class BudgetedSearch(PySearchStrategy):
    """``inner`` (a MetaSchedule search strategy) proposing at most ``max_trials`` candidates;
    ``untrained() -> bool`` (optional) says when the cost model has no data yet. ``shared``
    (optional) is a one-item list, the trials left to the whole run, which every task's strategy
    draws its batches from: a run's total budget is kept to the trial (MetaSchedule's own global
    cap is checked between batches, so two tasks' batches could overrun it)."""

    def __init__(self, inner, max_trials: int, untrained=None, shared: list[int] | None = None,
                 refine_trials: int = 0, refiner=None, shared_refine: int = 0):
        super().__init__()
        self.inner = inner
        self.max_trials = max_trials
        self.untrained = untrained
        self.shared = shared
        self.refine_trials = refine_trials if refiner is not None else 0
        self.refiner = refiner
        self.shared_refine = shared_refine if refiner is not None else 0
        self.cold_searches = 0  # searches run without genetic iterations
        self.refined = 0  # candidates proposed by the refiner
        self.stall_refined = 0  # of which while the evolution stalled (before the last refine_trials)
        self.proposed = 0  # candidates proposed in all
        self.best_s = math.inf  # the fastest candidate this strategy has measured (seconds)
        self.evolved_since_best = 0  # evolution proposals measured since the best last got STALL_GAIN faster
        self.refining_stall = False  # the batch in flight is a refinement batch for a stalled evolution
        self.context = None
        self.cost_model = None
        self.per_iter = 0

    def _initialize_with_tune_context(self, context) -> None:
        self.context = context
        self.inner._initialize_with_tune_context(context)

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None) -> None:
        self.per_iter, self.cost_model = num_trials_per_iter, cost_model
        self.max_trials = min(max_trials, self.max_trials)
        self.inner.pre_tuning(self.max_trials, num_trials_per_iter, design_spaces, database, cost_model)

    def post_tuning(self) -> None:
        self.inner.post_tuning()

    def generate_measure_candidates(self):
        if self.shared is not None and self.shared[0] <= 0:
            return None  # the run's budget is spent: this task ends
        left = self.max_trials - self.proposed
        if left <= 0:
            return None
        refining = left <= self.refine_trials or (self.shared is not None and self.shared[0] <= self.shared_refine)
        batch = self._refine(left) if refining else None
        self.refining_stall = False
        if not batch and self._stalled():
            batch = self._refine(left)
            self.refining_stall = bool(batch)
            self.stall_refined += len(batch)
            if not batch:  # no unmeasured neighbours: the evolution gets another STALL_TRIALS
                self.evolved_since_best = 0
        for _ in range(REDRAWS):
            if batch:
                break
            batch = self._generate()
            if batch:
                batch = self._not_refined(batch)
        if batch is not None:
            batch = list(batch)[: min(left, self.shared[0]) if self.shared is not None else left]
            if self.shared is not None:
                self.shared[0] -= len(batch)
            self.proposed += len(batch)
        return batch

    def _not_refined(self, batch) -> list:
        """The evolution's proposals less the kernels refinement has measured: MetaSchedule's
        evolution avoids only what it proposed itself (the runner would answer those from the
        database, a trial spent on nothing new)."""
        done = self.refiner.proposed if self.refiner is not None else None
        if not done:
            return batch
        from ..db.replay import module_hash

        return [c for c in batch if module_hash(c.sch.mod) not in done]

    def _stalled(self) -> bool:
        return self.refiner is not None and STALL_TRIALS > 0 and self.evolved_since_best >= STALL_TRIALS

    def _refine(self, left: int):
        batch = self.refiner.candidates(self.context, self.cost_model, min(left, self.per_iter or left))
        self.refined += len(batch)
        return batch

    def _generate(self):
        if self.untrained is None or not isinstance(self.inner, EvolutionarySearch) or not self.untrained():
            return self.inner.generate_measure_candidates()
        # The field is read-only to Python (def_ro); FFIProperty.set is tvm_ffi's documented way
        # past that guard. It is read once per search, on this thread, before the workers start.
        iters = _field(self.inner, "genetic_num_iters")
        configured = self.inner.genetic_num_iters
        iters.set(self.inner, 0)
        try:
            self.cold_searches += 1
            return self.inner.generate_measure_candidates()
        finally:
            iters.set(self.inner, configured)

    def notify_runner_results(self, measure_candidates, results) -> None:
        self.inner.notify_runner_results(measure_candidates, results)
        secs = [sum(map(float, r.run_secs)) / len(r.run_secs) for r in results
                if r.error_msg is None and r.run_secs]
        batch_best = min(secs, default=math.inf)
        improved = batch_best < self.best_s * (1 - STALL_GAIN)
        self.best_s = min(self.best_s, batch_best)
        if self.refining_stall:
            # refinement for a stalled evolution goes on while it makes the best faster; else the
            # evolution (now seeded with the refined records) gets STALL_TRIALS more proposals
            self.evolved_since_best = STALL_TRIALS if improved else 0
        elif improved:
            self.evolved_since_best = 0
        else:
            self.evolved_since_best += len(results)

    def clone(self):
        return BudgetedSearch(self.inner.clone(), self.max_trials, self.untrained, self.shared, self.refine_trials,
                              self.refiner, self.shared_refine)
