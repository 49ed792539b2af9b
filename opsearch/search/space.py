"""The design space of a workload on a target: MetaSchedule's rules, plus operator-specific
choices where the generic space cannot reach a good kernel (or cannot even be enumerated).

The generic space is post-order application of the target's default schedule rules. On CPU the
default multi-level tiling offers three write-reuse variants per reduction stage and rfactor
adds more, and the variants multiply across stages: the ten DFT stages of ``fft_conv1d`` make
3^10 design spaces, which exhausts memory before the first trial. Multi-stage workloads (more
than ``MAX_GENERIC_STAGES`` reduction stages) therefore get one tiling variant per stage (write
cache at the outer tile level), with the same tiling, vectorisation, unrolling and
compute-location decisions left to the search.

On CPU the unrolling choices stop at 64 steps (MetaSchedule offers 0, 16, 64 and 512): a loop
nest unrolled up to 512 steps is most of a search's compile time and rarely its best kernel.
In a 64-trial run of context_d4 the 25 candidates sampled with 512 took 17.2 of the 25.5 CPU
seconds of compiling (LLVM, 0.58 s median against 0.21 s), and effnet_3x3_e8's slowest compiles
(2.7-39 s) were all 512. Of the 69 fastest shipped records (one per workload and CPU) 5 unroll
512; in 3 of the 4 files that also hold a record with less unrolling for that workload it runs
within 3% (benchmarks/RESULTS.md, session 13). Without them, 64 trials ran at 1.1-1.5x the trials per
minute. Traces that already carry 512 (older records, transfer seeds) still replay. Refinement can
try just its best kernel with 512 (``opsearch.search.refine.EXTRA_UNROLL``, off: measured there).
"""

from __future__ import annotations

from ..ops.spec import Workload
from ..targets import TargetSpec

MAX_GENERIC_STAGES = 2
MULTISTAGE_POPULATION = 48  # the evolution's population cap for workloads of more stages than that
TWO_STAGE_POPULATION_SCALE = 4  # the population of a two-stage workload, in configured populations
LLVM_UNROLL_STEPS = (0, 16, 64)  # MetaSchedule's default adds 512: see the module docstring


def reduction_stages(mod) -> int:
    """Number of blocks with a reduction iterator in the workload's PrimFunc."""
    from tvm.s_tir import Schedule

    sch = Schedule(mod)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    return sum(any(iv.iter_type == 2 for iv in sch.get(b).iter_vars) for b in blocks)


def population(mod, configured: int) -> int:
    """The evolutionary search's population for ``mod``: ``configured`` for one tiled stage;
    ``TWO_STAGE_POPULATION_SCALE`` times it for two; at most ``MULTISTAGE_POPULATION`` beyond.

    MetaSchedule's multi-level tiling offers three sketches per stage (write cache or none) and
    the sketches of two stages multiply (condconv2d: 9 design spaces against 3), while the
    initial population is sampled across all of them: 128 gave each of condconv2d's sketches ~14
    samples. On condconv2d mbv2_dw_e8 (znver4 VM, 2026-12-07, 256 trials, two seeds, picks timed
    in five fresh processes) a population of 512, stock MetaSchedule's, made picks of 143 / 163
    µs against 162-177 µs with 128 (stock's: 140 / 127; two more seeds: 102 and 163 µs), at
    about half the trials per minute (67 against 125); on an icelake-server VM (one seed) 0.76
    of stock's pick became 1.18. On effnet_3x3_e8 (znver4, one seed) the confirmed picks tied
    (2,393 against 2,384 µs with 128), at half the trials per minute.
    Evolving schedules of many stages is costly instead (each mutation replays every stage): a
    smaller population keeps a search iteration within seconds on small machines."""
    stages = reduction_stages(mod)
    if stages > MAX_GENERIC_STAGES:
        return min(configured, MULTISTAGE_POPULATION)
    return configured * TWO_STAGE_POPULATION_SCALE if stages == MAX_GENERIC_STAGES else configured


def _multistage_llvm_rules():
    from tvm.s_tir.meta_schedule import schedule_rule as sr

    return [
        sr.ApplyCustomRule(),
        sr.InlineConstantScalars(),
        sr.AutoInline(into_producer=False, into_consumer=True, inline_const_tensor=True, disallow_if_then_else=True,
                      require_injective=True, require_ordered=True, disallow_op=["tirx.exp"]),
        sr.MultiLevelTiling(structure="SSRSRS", tile_binds=None, max_innermost_factor=64, vector_load_lens=None,
                            reuse_read=None, reuse_write=sr.ReuseType(req="must", levels=[2], scope="global")),
        _unroll_rule(),
        sr.RandomComputeLocation(),
    ]


def _unroll_rule():
    """MetaSchedule's LLVM parallelise/vectorise/unroll rule with ``LLVM_UNROLL_STEPS``."""
    from tvm.s_tir.meta_schedule import schedule_rule as sr

    return sr.ParallelizeVectorizeUnroll(max_jobs_per_core=16, max_vectorize_extent=64,
                                         unroll_max_steps=list(LLVM_UNROLL_STEPS), unroll_explicit=True)


def _llvm_rules():
    """MetaSchedule's default LLVM rules with unrolling limited to ``LLVM_UNROLL_STEPS``."""
    from tvm.s_tir.meta_schedule import schedule_rule as sr

    return [_unroll_rule() if isinstance(r, sr.ParallelizeVectorizeUnroll) else r for r in sr.ScheduleRule.create("llvm")]


def design_space(wl: Workload, target: TargetSpec, mod=None):
    """(MetaSchedule SpaceGenerator for ``wl`` on ``target``, whether it is multi-stage)."""
    from tvm.s_tir import meta_schedule as ms

    if mod is None:
        from ..ops.tir import ir_module

        mod = ir_module(wl)
    multistage = reduction_stages(mod) > MAX_GENERIC_STAGES
    if target.kind == "llvm":
        rules = _multistage_llvm_rules() if multistage else _llvm_rules()
        return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="llvm", mutator_probs="llvm"), multistage
    if _generates(ms.space_generator.PostOrderApply(), mod, target):
        return ms.space_generator.PostOrderApply(), multistage
    # MetaSchedule's CUDA rules fail inside generate_design_space ("IndexError: Index 6 out of
    # bounds 6") on some multi-stage modules when CrossThreadReduction and MultiLevelTiling both
    # apply (spectral_conv2d, TVM 0.27): those get the space without CrossThreadReduction.
    rules = [r for r in ms.ScheduleRule.create("cuda") if type(r).__name__ != "CrossThreadReduction"]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="cuda", mutator_probs="cuda"), multistage


def _generates(gen, mod, target: TargetSpec) -> bool:
    """Whether ``gen`` produces ``mod``'s design space without failing (a throwaway context)."""
    from tvm.s_tir import meta_schedule as ms

    try:
        ms.TuneContext(mod=mod, target=target.tvm(), space_generator=gen, task_name="probe",
                       num_threads=1).generate_design_space()
        return True
    except Exception:  # noqa: BLE001 - MetaSchedule's C++ errors arrive as several types
        return False
