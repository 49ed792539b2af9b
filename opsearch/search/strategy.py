"""The search strategy of one tuning task: MetaSchedule's evolutionary search, capped at the
workload's own trial budget.

MetaSchedule gives every task of a run one trial cap (``max_trials_per_task``); workloads that
resume with different amounts already spent, or whose first trials (default, shipped record)
differ, have different budgets left. Stopping a task from a measure callback races the task
scheduler (it may pick the task it just joined and fail its "not terminated" check), so the cap
is given to the search itself: it proposes at most the workload's budget and then reports that
it is done, which MetaSchedule handles by ending the task.
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy


@derived_object
class BudgetedSearch(PySearchStrategy):
    """``inner`` (a MetaSchedule search strategy) proposing at most ``max_trials`` candidates."""

    def __init__(self, inner, max_trials: int):
        super().__init__()
        self.inner = inner
        self.max_trials = max_trials

    def _initialize_with_tune_context(self, context) -> None:
        self.inner._initialize_with_tune_context(context)

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None) -> None:
        self.inner.pre_tuning(min(max_trials, self.max_trials), num_trials_per_iter, design_spaces, database, cost_model)

    def post_tuning(self) -> None:
        self.inner.post_tuning()

    def generate_measure_candidates(self):
        return self.inner.generate_measure_candidates()

    def notify_runner_results(self, measure_candidates, results) -> None:
        self.inner.notify_runner_results(measure_candidates, results)

    def clone(self):
        return BudgetedSearch(self.inner.clone(), self.max_trials)
