"""The design space of a workload on a target: MetaSchedule's rules, plus operator-specific
choices where the generic space cannot reach a good kernel (or cannot even be enumerated).

The generic space is post-order application of the target's default schedule rules. On CPU the
default multi-level tiling offers three write-reuse variants per reduction stage and rfactor
adds more, and the variants multiply across stages: the ten DFT stages of ``fft_conv1d`` make
3^10 design spaces, which exhausts memory before the first trial. Multi-stage workloads (more
than ``MAX_GENERIC_STAGES`` reduction stages) therefore get one tiling variant per stage (write
cache at the outer tile level), with the same tiling, vectorisation, unrolling and
compute-location decisions left to the search.
"""

from __future__ import annotations

from ..ops.spec import Workload
from ..targets import TargetSpec

MAX_GENERIC_STAGES = 2


def reduction_stages(mod) -> int:
    """Number of blocks with a reduction iterator in the workload's PrimFunc."""
    from tvm.s_tir import Schedule

    sch = Schedule(mod)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    return sum(any(iv.iter_type == 2 for iv in sch.get(b).iter_vars) for b in blocks)


def _multistage_llvm_rules():
    from tvm.s_tir.meta_schedule import schedule_rule as sr

    return [
        sr.ApplyCustomRule(),
        sr.InlineConstantScalars(),
        sr.AutoInline(into_producer=False, into_consumer=True, inline_const_tensor=True, disallow_if_then_else=True,
                      require_injective=True, require_ordered=True, disallow_op=["tirx.exp"]),
        sr.MultiLevelTiling(structure="SSRSRS", tile_binds=None, max_innermost_factor=64, vector_load_lens=None,
                            reuse_read=None, reuse_write=sr.ReuseType(req="must", levels=[2], scope="global")),
        sr.ParallelizeVectorizeUnroll(max_jobs_per_core=16, max_vectorize_extent=64, unroll_max_steps=[0, 16, 64],
                                      unroll_explicit=True),
        sr.RandomComputeLocation(),
    ]


def design_space(wl: Workload, target: TargetSpec, mod=None):
    """(MetaSchedule SpaceGenerator for ``wl`` on ``target``, whether it is multi-stage)."""
    from tvm.s_tir import meta_schedule as ms

    if mod is None:
        from ..kernels import ir_module

        mod = ir_module(wl)
    multistage = reduction_stages(mod) > MAX_GENERIC_STAGES
    if target.kind == "llvm" and multistage:
        rules = _multistage_llvm_rules()
        return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="llvm", mutator_probs="llvm"), True
    return ms.space_generator.PostOrderApply(), multistage
