"""The tuning engine: workloads + target + budget -> measured records in the database.

Builds on MetaSchedule's design space (post-order application of the target's schedule rules)
and evolutionary search, with our own pieces where stock tuning is slow or wrong on small
machines: persistent build/measure workers (``runner.py``), intrinsics registered per target
(``opsearch.targets.register_intrinsics``), our ranking cost model pretrained from the database (``opsearch.costmodel``),
cross-run deduplication (``dedup.py``), records written as measured with their error text
(``opsearch.db.metaschedule``), an RPC runner that stops when its servers leave (``rpc.py``), budgets counted from the database so an interrupted run resumes,
and the best candidate of every workload checked against the operator's reference before the
run reports it.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import replace

from ..errors import OpsearchError
from ..ops.spec import Workload
from ..targets import TargetSpec, resolve
from .config import Progress, TuneConfig, TuneResult, WorkloadProgress

log = logging.getLogger(__name__)


class Tuner:
    """One tuning run. ``Tuner(workloads, target, db, config).run()`` -> list of TuneResult."""

    def __init__(self, workloads: list[Workload], target: str | TargetSpec = "cpu", db=None,
                 config: TuneConfig | None = None, progress: Progress | None = None):
        from .. import db as dbmod

        self.config = config or TuneConfig()
        self.config.check()
        if not workloads:
            raise OpsearchError("nothing to tune: no workloads given")
        self.workloads = list(dict.fromkeys(workloads))
        self.target = resolve(target)
        if self.target.kind == "cuda" and self.config.measure and not self.config.rpc:
            raise OpsearchError(
                f"no GPU here to measure {self.target.name}: pass --rpc HOST:PORT:KEY (a tracker with GPU "
                "servers) or --no-measure to compile and rank candidates without timing them")
        if self.config.rpc:
            from .rpc import parse_rpc

            self.rpc = parse_rpc(self.config.rpc)
        self.db = db if db is not None and not isinstance(db, str) else dbmod.connect(db)
        self.progress = progress or (lambda event: None)
        self.interrupted = False
        self.default_hashes: set[str] = set()  # default schedules measured as trial 1 (never seeds)
        self.started = 0.0
        self._rpc_runner = None  # the RPC runner, when measuring through a tracker
        self._runner = None  # the local runner, made on first use and shut down when the run ends
        self._queued_handoff = None  # the files of first trials queued on the runner
        self._plan_now: dict[Workload, WorkloadProgress] = {}  # the run's plan, once made

    # ------------------------------------------------------------------ budget
    def _plan(self) -> dict[Workload, WorkloadProgress]:
        per_cap = self.config.trials_per_workload or self.config.trials
        spent = {wl: self.db.count(wl, self.target) for wl in self.workloads}
        global_left = max(0, self.config.trials - sum(spent.values()))
        plan = {}
        for wl in self.workloads:
            budget = max(0, min(per_cap - spent[wl], global_left))
            plan[wl] = WorkloadProgress(wl, spent[wl], budget, done=budget == 0)
        self.global_left = global_left
        return plan

    def _plan_has_work(self) -> bool:
        """Whether any workload has budget left (else no runner is started)."""
        return any(not p.done for p in self._plan().values())

    def _add_first_trials(self) -> tuple[dict[Workload, list[str]], set[str]]:
        """Before the search, for every workload that has no record yet and within the budget:
        measure its default schedule (``include_default``) and its shipped record
        (``include_shipped``) and store them as ordinary records (trials 1 and 2 of the workload).
        The default is not offered to the evolutionary search as a seed (its trace has no
        decisions to mutate, and MetaSchedule would propose it again); the shipped record is (it is
        a trace of the search space), so it is measured now, before the search starts. The default
        is queued on the runner instead: it is measured with the next batch (the shipped record's
        or the search's first), compiled beside its candidates. Returns ({workload: module hashes
        added or queued}, default hashes)."""
        from ..db.replay import module_hash, replay
        from ..db.shipped import shipped_best
        from ..ops.tir import default_schedule

        cfg = self.config
        left = cfg.trials - sum(self.db.count(wl, self.target) for wl in self.workloads)
        per_cap = cfg.trials_per_workload or cfg.trials
        added: dict[Workload, list[str]] = {}
        defaults: set[str] = set()
        for wl in self.workloads:
            if self.db.count(wl, self.target) > 0:
                continue
            firsts = []
            if cfg.include_default:
                firsts.append(("default schedule", lambda wl=wl: default_schedule(wl, self.target)))
            shipped = shipped_best(wl, self.target.name) if cfg.include_shipped else None
            if shipped is not None and shipped.trace is not None:
                firsts.append((f"shipped record of {shipped.target}", lambda rec=shipped, wl=wl: replay(rec.trace, wl)))
            for what, make in firsts:
                if left <= 0 or len(added.get(wl, ())) >= per_cap:
                    break
                try:
                    sch = make()
                    if module_hash(sch.mod) in added.get(wl, ()):  # a shipped record of the default schedule
                        continue
                    if what == "default schedule":
                        h = self._queue_default(wl, sch)
                        defaults.add(h)
                    else:
                        rec = self._measure_schedule(wl, sch)
                        self.db.add_records([rec])
                        h = rec.module_hash
                    added.setdefault(wl, []).append(h)
                    left -= 1
                except Exception as e:  # noqa: BLE001 - the search still runs without it
                    log.warning("%s of %s not measured: %s", what, wl.op, str(e).splitlines()[-1:])
        return added, defaults

    def _queue(self, wl: Workload, sch, done) -> str:
        """Queue schedule ``sch`` of ``wl`` on the run's runner, measured with the next batch (or
        by ``flush()``) exactly as candidates are: same worker processes, random inputs, measure
        config. ``done(record or None, error or None)`` gets the record built from its timing.
        Returns its module hash."""
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.meta_schedule.builder import BuilderInput
        from tvm.s_tir.meta_schedule.runner import RunnerInput

        from ..db.records import Record
        from ..db.replay import module_hash, plain_json, trace_json
        from ..ops.tir import prim_func
        from .runner import ModuleHandoff

        args_info = ms.arg_info.ArgInfo.from_prim_func(prim_func(wl))
        if self._queued_handoff is None:  # holds the queued modules' files until the run ends
            self._queued_handoff = ModuleHandoff()
        (built,) = self._queued_handoff.build([BuilderInput(sch.mod, self.target.tvm())])
        h, trace, info = module_hash(sch.mod), trace_json(sch), plain_json([a.as_json() for a in args_info])

        def measured(secs, error):
            if error is not None:
                done(None, error)
            else:
                done(Record.new(wl, self.target.name, h, run_us=[float(t) * 1e6 for t in secs], status="ok",
                                trace=trace, args_info=info), None)

        self._local_runner().add_to_next_batch(RunnerInput(built.artifact_path, "cpu", args_info), measured)
        return h

    def _queue_default(self, wl: Workload, sch) -> str:
        """Queue ``wl``'s default schedule (see ``_add_first_trials``); its record is stored when
        the runner has measured it. Returns its module hash."""

        def done(rec, error):
            p = self._plan_now.get(wl)
            if error is not None:
                log.warning("default schedule of %s not measured: %s", wl.op, str(error).strip().splitlines()[-1:])
                if p is not None:
                    p.failed += 1
                return
            self.db.add_records([rec])
            if p is not None and (p.best_us is None or rec.mean_us < p.best_us):
                p.best_us = rec.mean_us

        return self._queue(wl, sch, done)

    def _measure_schedule(self, wl: Workload, sch):
        """Measure a schedule now, with whatever is queued (see ``_queue``); returns its record."""
        out = {}
        self._queue(wl, sch, lambda rec, error: out.update(rec=rec, error=error))
        self._local_runner().flush()
        if out["error"]:
            raise RuntimeError(out["error"])
        return out["rec"]

    def _local_runner(self):
        """The run's one local runner (its worker processes serve the default and the search)."""
        from .runner import LocalBuildRunner

        if self._runner is None:
            self._runner = LocalBuildRunner(self.target.config, self.config.measure_config)
        return self._runner

    def _known(self) -> dict[str, tuple[list[float] | None, str | None]]:
        known = {}
        for wl in self.workloads:
            for rec in self.db.history(wl, self.target):
                if rec.status == "ok":
                    known[rec.module_hash] = ([t / 1e6 for t in rec.run_us], None)
                elif rec.status != "unmeasured":
                    known[rec.module_hash] = (None, f"{rec.status}: {rec.error or ''}".strip())
        return known

    # ------------------------------------------------------------------ components
    def _builder_runner(self):
        from .builder import PoolBuilder
        from .runner import ModuleHandoff

        cfg = self.config
        if self.target.kind == "cuda" and not cfg.measure:
            from .nomeasure import NoMeasureRunner

            return PoolBuilder(check_cuda=True), NoMeasureRunner()
        if cfg.rpc:
            from tvm.s_tir import meta_schedule as ms

            from .rpc import WatchedRPCRunner, check_remote_device, check_tracker

            host, port, key = self.rpc
            check_tracker(host, port, key)
            check_remote_device(host, port, key, self.target.kind)
            mc = cfg.measure_config
            self._rpc_runner = WatchedRPCRunner(
                host, port, key,
                rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                               session_timeout_sec=int(mc.timeout_sec)),
                evaluator_config=ms.runner.EvaluatorConfig(number=mc.number, repeat=mc.repeat,
                                                           min_repeat_ms=mc.min_repeat_ms))
            return PoolBuilder(check_cuda=self.target.kind == "cuda"), self._rpc_runner
        return ModuleHandoff(), self._local_runner()

    def _cost_model(self, workload_of):
        from ..costmodel import xgb
        from ..costmodel.dataset import pretrain

        model = xgb.XGBCostModel(workload_of=workload_of, seed=self.config.seed, own=[wl.key() for wl in self.workloads],
                                 others_rows=xgb.OTHERS_ROWS)
        if not self.config.pretrain:
            return model
        try:
            n = pretrain(model, self.db, self.target.kind)
            log.info("cost model pretrained on %d records of %s targets", n, self.target.kind)
        except Exception as e:  # noqa: BLE001 - a cold model still tunes
            log.warning("cost model pretraining skipped: %s", e)
        if model.booster is None and self.config.include_shipped:
            from ..costmodel.shipped import shipped_model

            base = shipped_model(self.target.kind)
            if base is not None:
                model.set_base(base)
                log.info("cost model: nothing to pretrain on; starting from the shipped model (%s records)",
                         base.attr("records"))
        return model

    # ------------------------------------------------------------------ run
    def run(self) -> list[TuneResult]:
        from ..targets import register_intrinsics

        cfg = self.config
        local_cpu = cfg.measure and self.target.kind == "llvm" and not cfg.rpc  # the local CPU runner times
        try:
            if local_cpu and self._plan_has_work():
                self._local_runner()  # its workers start now, beside the set-up below
            register_intrinsics(self.target.kind)
            added = {}
            if (cfg.include_default or cfg.include_shipped) and local_cpu:
                added, self.default_hashes = self._add_first_trials()
            plan = self._plan_now = self._plan()
            for wl, hashes in added.items():  # the first trials of this run for the workload
                p, n = plan[wl], len(hashes)
                stored = [r for r in self.db.history(wl, self.target) if r.module_hash in hashes]
                # stored ones are counted as spent by _plan; a queued default is not stored yet
                p.spent_before, p.measured, p.budget = p.spent_before - len(stored), n, p.budget + len(stored)
                p.best_us = min((r.mean_us for r in stored if r.status == "ok"), default=None)
                p.done = p.measured >= p.budget
                self.global_left -= n - len(stored)
            active = [wl for wl in self.workloads if not plan[wl].done]
            # done before the search: its first trials used this run's budget, or earlier runs did
            stopped = {wl: "budget" if wl in added else "already tuned" for wl in self.workloads if plan[wl].done}
            if active:
                self._tune(active, plan, stopped)
            if self._runner is not None:
                self._runner.flush()  # first trials still queued: no batch followed them
        finally:
            if self._queued_handoff is not None:
                self._queued_handoff.shutdown()
                self._queued_handoff = None
            if self._runner is not None:
                r = self._runner
                log.info("%d candidates timed fully, %d by their screening sample alone; %s; runner seconds: %s",
                         r.timed_fully, r.screened_out, r.compile_summary(),
                         ", ".join(f"{k} {v:.1f}" for k, v in r.phase_s.items()))
                self._runner.shutdown()
                self._runner = None
        if cfg.confirm != 0 and local_cpu and not self.interrupted:
            self._confirm(plan, stopped)
        # A task that ends under its budget without another reason ran out of new candidates,
        # unless the run's total budget (--trials, shared by its workloads) is spent.
        shared_spent = sum(p.measured for p in plan.values()) >= cfg.trials - sum(p.spent_before for p in plan.values())
        return [self._result(wl, plan[wl], stopped.get(wl) or ("space exhausted" if plan[wl].measured < plan[wl].budget
                                                               and not shared_spent else "budget"))
                for wl in self.workloads]

    def _tune(self, active: list[Workload], plan: dict, stopped: dict) -> None:
        import tvm_ffi
        from tvm.s_tir import meta_schedule as ms

        from ..db.metaschedule import CaptureErrors, MetaScheduleDatabase
        from ..ops.tir import ir_module
        from .callbacks import ProgressCallback, SafeRemoveArtifacts
        from .dedup import DedupBuilder, DedupRunner
        from .space import design_space, population as search_population
        from .strategy import BudgetedSearch

        cfg = self.config
        tvm_target = self.target.tvm()
        mods = {wl: ir_module(wl) for wl in active}
        left = {wl: plan[wl].budget - plan[wl].measured for wl in active}  # the default may be trial 1
        by_hash = {str(tvm_ffi.structural_hash(m)): wl for wl, m in mods.items()}

        def workload_of(context):
            return by_hash[str(tvm_ffi.structural_hash(context.mod))]

        cost_model = self._cost_model(workload_of)

        def untrained():
            return cost_model.booster is None

        tasks, task_wl, strategies = [], [], []
        run_left = [min(self.global_left, sum(left.values()))]  # drawn on by every task's batches
        for wl in active:
            space, _ = design_space(wl, self.target, mods[wl])
            population = search_population(mods[wl], cfg.population)
            # the refiner reads the run's database adapter, which is made below with the run
            refine_trials, refiner = self._refiner(wl, mods[wl], min(left[wl], run_left[0]), lambda: adapter)
            strategy = BudgetedSearch(ms.search_strategy.EvolutionarySearch(population_size=population), left[wl],
                                      untrained, run_left, refine_trials, refiner,
                                      int(run_left[0] * cfg.refine) if len(active) > 1 else 0)
            tasks.append(ms.TuneContext(
                mod=mods[wl], target=tvm_target, space_generator=space, search_strategy=strategy,
                task_name=f"{wl.op}", rand_state=cfg.seed, num_threads=self.target.num_cores or "physical"))
            task_wl.append(wl)
            strategies.append(strategy)

        run = self.db.start_run({"target": self.target.name, "trials": cfg.trials, "workloads": [w.key() for w in active],
                                 "measure": cfg.measure, "rpc": cfg.rpc})
        adapter = MetaScheduleDatabase(self.db, self.target, by_hash, run_id=run.id, transfer=cfg.transfer,
                                      skip=self.default_hashes)
        known = self._known()
        builder, runner = self._builder_runner()
        builder, runner = DedupBuilder(builder, known), DedupRunner(runner, known)
        progress_cb = ProgressCallback(self, task_wl, plan, stopped)
        if cfg.measure:
            callbacks = [CaptureErrors(adapter), ms.measure_callback.AddToDatabase(), SafeRemoveArtifacts(),
                         ms.measure_callback.UpdateCostModel(), progress_cb]
        else:
            from .nomeasure import RecordUnmeasured

            callbacks = [RecordUnmeasured(self.db, self.target, task_wl, run.id), SafeRemoveArtifacts(), progress_cb]
        budget = max(left.values())
        batch = min(cfg.batch, min(left.values()))
        main_thread = threading.current_thread() is threading.main_thread()  # signals only work there
        previous = signal.getsignal(signal.SIGINT) if main_thread else None

        def on_sigint(signum, frame):
            if self.interrupted:  # a second Ctrl-C aborts at once
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.interrupted = True
            self.progress({"event": "interrupt"})

        work_dir = tempfile.mkdtemp(prefix="opsearch-tune-")
        self.started = time.monotonic()
        status = "done"
        try:
            if main_thread:
                signal.signal(signal.SIGINT, on_sigint)
            self.progress({"event": "start", "run_id": run.id, "tasks": len(active), "budget": sum(plan[w].budget for w in active)})
            ms.tune_tasks(
                tasks=tasks, task_weights=[1.0] * len(tasks), work_dir=work_dir,
                max_trials_global=min(self.global_left, sum(left.values())),
                max_trials_per_task=budget, num_trials_per_iter=batch,
                builder=builder, runner=runner, database=adapter, cost_model=cost_model,
                measure_callbacks=callbacks, task_scheduler="gradient" if len(tasks) > 1 else "round-robin")
        except Exception as e:
            lost = self._rpc_runner.lost if self._rpc_runner is not None else None
            if lost is not None:  # MetaSchedule wraps our error: say it in our one line
                from .rpc import RPCServerLost

                status = "failed"
                raise RPCServerLost(lost) from None
            if not (_stopped_task_picked(e) and (self.interrupted or set(stopped.values()) & STOPS)):
                status = "failed"
                raise
            # MetaSchedule's scheduler picked a task our callback had just stopped (seen once,
            # on Ctrl-C during a 3-workload fft_conv1d run): every candidate it measured was
            # already stored by the callbacks, so the run ends as asked.
            log.warning("tuning stopped: %s", str(e).strip().splitlines()[-1])
        except BaseException:
            status = "failed"
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)
            if self.interrupted and status == "done":
                status = "interrupted"
            self.db.finish_run(run.id, status)
            for part in (builder.inner, runner.inner):
                if hasattr(part, "shutdown") and part is not self._runner:  # run() shuts that one
                    part.shutdown()
            shutil.rmtree(work_dir, ignore_errors=True)
            if cost_model.booster is not None and cost_model.size > cost_model.n_pretrained:
                self.db.save_cost_model(self.target.kind, cost_model.to_bytes(), format="xgboost-json",
                                        n_samples=cost_model.size, metrics=cost_model.metadata())
        for wl, strategy in zip(task_wl, strategies):
            if strategy.refined:
                log.info("%s: %d of its candidates came from refinement (one-step neighbours of its best records;"
                         " %d of them while the evolution stalled, %d its best decisions in another sketch, %d with"
                         " more unrolling)", wl.op, strategy.refined, strategy.stall_refined,
                         strategy.refiner.transplanted, strategy.refiner.unrolled)
        if self.interrupted:
            for wl in active:
                stopped.setdefault(wl, "interrupted")

    def _refiner(self, wl: Workload, mod, budget: int, adapter):  # adapter: () -> the run's MetaScheduleDatabase
        """(trials, Refiner) for the end of ``wl``'s search (see ``TuneConfig.refine``), or (0, None)."""
        from .refine import MIN_BUDGET, Refiner

        trials = int(budget * self.config.refine)
        if budget < MIN_BUDGET or trials <= 0:
            return 0, None

        def top(k):
            msdb = adapter()
            return msdb.get_top_k(msdb.commit_workload(mod), k)

        def seen():
            return {r.module_hash for r in self.db.history(wl, self.target)}

        return trials, Refiner(top, seen, seed=self.config.seed)

    def _confirm(self, plan: dict, stopped: dict) -> None:
        """Time each well-searched workload's finalists again side by side (see ``confirm``);
        by default not those stopped by the run's time limit, which it would overrun."""
        from .confirm import AUTO_FINALISTS, AUTO_MIN_TRIALS, MIN_TRIALS, confirm_finalists

        k, min_trials = ((AUTO_FINALISTS, AUTO_MIN_TRIALS) if self.config.confirm is None
                         else (self.config.confirm, MIN_TRIALS))
        for wl in self.workloads:
            if plan[wl].measured - plan[wl].cached < min_trials:
                continue
            if self.config.confirm is None and stopped.get(wl) == "time limit":
                continue
            confirmed = confirm_finalists(self.db, wl, self.target, k)
            if confirmed:
                self.progress({"event": "confirm", "workload": wl, "finalists": confirmed})
                log.info("%s: finalists confirmed (before -> after, us): %s", wl.op,
                         ", ".join(f"{c.before_us:.1f} -> {c.after_us:.1f}" for c in confirmed))

    # ------------------------------------------------------------------ results
    def _result(self, wl: Workload, p: WorkloadProgress, stopped: str) -> TuneResult:
        best, verified = None, None
        if self.config.measure:
            best, verified = self._verified_best(wl) if self.config.verify else (self.db.best(wl, self.target, shipped=False), None)
        return TuneResult(wl, self.target.name, best, p.spent_before, p.measured, p.cached, p.failed, verified, stopped)

    def _verified_best(self, wl: Workload, tries: int = 5):
        """The fastest record that replays and matches the reference; wrong ones are marked."""
        from ..db.replay import replay
        from .verify import check_schedule

        for rec in self.db.top_k(wl, self.target, tries):
            if self.target.kind != "llvm":
                return rec, None  # cannot run CUDA here: unverified
            try:
                err = check_schedule(replay(rec.trace, wl), wl, self.target)
            except Exception as e:  # noqa: BLE001
                err = f"does not build or run: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
            if err is None:
                return rec, True
            self.db.mark(rec, "wrong_result", err)
        return None, False


STOPS = {"interrupted", "time limit", "early stop"}  # stop reasons our callback sets


def _stopped_task_picked(e: Exception) -> bool:
    """MetaSchedule's check that the task it picked is not terminated."""
    return "is_terminated" in str(e)


def tune(workloads: list[Workload] | Workload, target: str = "cpu", db=None, progress: Progress | None = None,
         **config) -> list[TuneResult]:
    """Tune workloads for a target; see :class:`TuneConfig` for the keyword options."""
    if isinstance(workloads, Workload):
        workloads = [workloads]
    return Tuner(workloads, target, db, replace(TuneConfig(), **config), progress).run()

