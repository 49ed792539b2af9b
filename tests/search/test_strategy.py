"""The search strategy wrapper: while the cost model is untrained, MetaSchedule's evolution runs
without genetic iterations (its population is scored once), and with its configured number once
the model has data; the same evolution object serves both, so nothing is proposed twice. When the
evolution stalls, refinement takes batches while they make the best faster."""

from __future__ import annotations

import pytest


def _context(untrained, iters=3, trials=12, refiner=None):
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.cost_model import PyCostModel
    from tvm.ir.utils import derived_object

    from opsearch import ops
    from opsearch.ops.tir import ir_module
    from opsearch.search.strategy import BudgetedSearch

    @derived_object
    class Counting(PyCostModel):
        """Random scores; counts the scorings (one per generation of the evolution)."""

        def __init__(self):
            super().__init__()
            import numpy as np

            self.calls, self.rng = 0, np.random.default_rng(1)

        def predict(self, context, candidates):
            self.calls += 1
            return self.rng.uniform(0, 1, len(candidates))

        def update(self, context, candidates, results):
            pass

        def load(self, path):
            pass

        def save(self, path):
            pass

    wl = ops.get("dilated_conv1d").workload(x=[1, 6, 37], weight=[5, 6, 3], dilation=2)
    inner = ms.search_strategy.EvolutionarySearch(population_size=16, init_min_unmeasured=8, genetic_num_iters=iters)
    strategy = BudgetedSearch(inner, trials, untrained, refine_trials=4 if refiner else 0, refiner=refiner)
    ctx = ms.TuneContext(mod=ir_module(wl), target=tvm.target.Target({"kind": "llvm", "num-cores": 2}), space_generator="post-order-apply",
                         search_strategy=strategy, task_name="t", rand_state=0, num_threads=1)
    model = Counting()
    strategy.pre_tuning(trials, 4, ctx.generate_design_space(), ms.database.MemoryDatabase(), model)
    # the evolution keeps a raw pointer to its context: the context must outlive every call
    return strategy, inner, model, ctx


def _measure(strategy, cands, secs=1e-3):
    from tvm.s_tir import meta_schedule as ms

    strategy.notify_runner_results(cands, [ms.runner.RunnerResult(run_secs=[secs], error_msg=None) for _ in cands])


def test_an_untrained_model_gets_no_genetic_iterations_then_a_trained_one_gets_them():
    import tvm_ffi

    trained = {"yes": False}
    strategy, inner, model, _ctx = _context(lambda: not trained["yes"], iters=3)
    seen = set()
    first = strategy.generate_measure_candidates()
    assert model.calls == 1, "the cold search scored its population once"
    assert inner.genetic_num_iters == 3, "the configured number is restored"
    assert strategy.cold_searches == 1
    _measure(strategy, first)
    seen |= {tvm_ffi.structural_hash(c.sch.mod) for c in first}
    trained["yes"] = True
    second = strategy.generate_measure_candidates()
    assert model.calls == 1 + 4, "three genetic iterations score four generations"
    assert strategy.cold_searches == 1
    hashes = {tvm_ffi.structural_hash(c.sch.mod) for c in second}
    assert len(first) == len(second) == 4
    assert not hashes & seen, "the trained search proposed a candidate the cold one had proposed"


@pytest.mark.parametrize("untrained", [None, lambda: False])
def test_without_the_predicate_or_with_a_trained_model_the_evolution_is_unchanged(untrained):
    strategy, inner, model, _ctx = _context(untrained, iters=2)
    cands = strategy.generate_measure_candidates()
    assert len(cands) == 4
    assert model.calls == 3
    assert strategy.cold_searches == 0


class _Refiner:
    """Stands in for opsearch.search.refine.Refiner: offers copies of candidates it was given."""

    def __init__(self):
        self.pool, self.calls, self.proposed = [], 0, set()

    def candidates(self, context, cost_model, n):
        self.calls += 1
        return self.pool[:n]


def test_a_stalled_evolution_hands_batches_to_refinement_while_they_pay(monkeypatch):
    from opsearch.search import strategy as strategy_mod

    monkeypatch.setattr(strategy_mod, "STALL_TRIALS", 8)
    refiner = _Refiner()
    strategy, inner, model, _ctx = _context(None, iters=1, trials=48, refiner=refiner)
    sources = []

    def step(secs):
        calls = refiner.calls
        cands = strategy.generate_measure_candidates()
        sources.append("refine" if refiner.calls > calls else "evolve")
        refiner.pool = list(cands)  # refinement "proposes" the same kernels again: only counts matter
        _measure(strategy, cands, secs)

    step(1e-3)  # the first best
    step(1e-3)
    step(1e-3)  # 8 proposals without a faster best: stalled
    step(0.5e-3)  # refinement makes it faster: it goes on
    step(0.499e-3)  # less than STALL_GAIN faster: back to the evolution
    step(1e-3)
    step(1e-3)
    step(1e-3)  # stalled again
    assert sources == ["evolve", "evolve", "evolve", "refine", "refine", "evolve", "evolve", "refine"]
    assert strategy.stall_refined == strategy.refined == 12
    assert strategy.proposed == 32


def test_without_a_refiner_or_with_stalls_off_the_evolution_keeps_every_batch(monkeypatch):
    from opsearch.search import strategy as strategy_mod

    monkeypatch.setattr(strategy_mod, "STALL_TRIALS", 0)
    refiner = _Refiner()
    strategy, inner, model, _ctx = _context(None, iters=1, trials=48, refiner=refiner)
    for _ in range(5):
        cands = strategy.generate_measure_candidates()
        refiner.pool = list(cands)
        _measure(strategy, cands)
    assert refiner.calls == 0 and strategy.refined == 0
