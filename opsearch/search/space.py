"""The design space of a workload on a target: MetaSchedule's rules, plus operator-specific
choices where the generic space cannot reach a good kernel.

The generic space is post-order application of the target's default schedule rules
(multi-level tiling, inlining, parallelise-vectorise-unroll, cross-thread reduction on GPUs).
"""

from __future__ import annotations

from ..ops.spec import Workload
from ..targets import TargetSpec


def design_space(wl: Workload, target: TargetSpec):
    """A MetaSchedule SpaceGenerator for ``wl`` on ``target``."""
    from tvm.s_tir import meta_schedule as ms

    return ms.space_generator.PostOrderApply()
