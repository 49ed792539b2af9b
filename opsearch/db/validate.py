"""What a stored schedule may contain: the one check every trace passes before it is replayed.

Records come from other people's machines (``opsearch db import``, ``schedules/``, a shared
PostgreSQL database), and replaying a trace compiles whatever it describes on this machine.
MetaSchedule traces can carry arbitrary annotation strings, and TVM acts on some of them at
compile time (``pragma_import_c`` / ``pragma_import_llvm`` splice C or LLVM IR into the module),
so a trace is accepted only when it is made of the instructions and annotations that opsearch's
search spaces (MetaSchedule's CPU and CUDA rules as configured in ``opsearch.search.space``) and
its default schedules (``opsearch.ops.schedules`` and the operator files) produce, each listed
below with the reason it is safe, and only within size bounds. Everything else is rejected with
a one-line reason, before any TVM object is built.

:func:`check_trace` is called by trace replay (``opsearch.db.replay.replay``: kernel selection,
import with replay, the tuner's seeds, the benchmarks), by import without replay
(``opsearch.db.transfer.parse_line``) and by the shipped-schedule reader
(``opsearch.db.shipped``); :func:`check_numbers` checks a record's latencies. They raise
:class:`TraceError` (a ``ValueError``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_INSTRUCTIONS = 2000  # the longest trace shipped today has 100; MetaSchedule's largest CPU traces ~300
MAX_DECISIONS = 1000
MAX_STRING = 200  # block, loop and variable names; quoted literals
MAX_DEPTH = 6  # [trace, [instructions], [instruction], [inputs], [list input], value]


class TraceError(ValueError):
    """A trace or record that opsearch will not replay: the message says why, in one line."""


# Instruction kinds, each with why replaying it cannot run code of the record's choosing: they
# only look up, sample, restructure loops and buffers of the workload's own IR, which comes from
# the operator registry, never from the record.
INSTRUCTIONS: dict[str, str] = {
    # look-ups: return handles to blocks and loops that exist in the workload's IR
    "GetSBlock": "looks a block up by name; fails if absent",
    "GetLoops": "the loops above a block",
    "GetChildBlocks": "the blocks under a block or loop",
    "GetProducers": "a block's producers",
    "GetConsumers": "a block's consumers",
    "GetOutputBlocks": "the blocks writing a scope's outputs",
    # sampling: the decision is data (an integer choice), replayed from the record's decisions
    "SamplePerfectTile": "tile factors whose product is the loop extent (checked on replay)",
    "SampleCategorical": "one of listed integer candidates",
    "SampleComputeLocation": "one of a block's legal compute locations",
    # loop and block restructuring: semantics-preserving schedule primitives, checked by TVM
    "Split": "splits a loop by factors",
    "Fuse": "fuses loops",
    "Reorder": "reorders loops",
    "Parallel": "marks a loop parallel",
    "Vectorize": "marks a loop vectorized",
    "Unroll": "marks a loop unrolled",
    "Bind": "binds a loop to a GPU thread axis (axis names checked below)",
    "ComputeAt": "moves a block under a loop",
    "ReverseComputeAt": "moves a consumer block under a loop",
    "ComputeInline": "inlines an elementwise block into its consumers",
    "ReverseComputeInline": "inlines an elementwise block into its producer",
    "CacheRead": "a copy of an input in a storage scope (scopes checked below)",
    "CacheWrite": "a staging buffer for an output in a storage scope (scopes checked below)",
    "StorageAlign": "pads a buffer's rows (the FFT's CUDA default schedule)",
    "SetScope": "moves an intermediate buffer to a storage scope (scopes checked below)",
    "DecomposeReduction": "splits a reduction into its init and update",
    "RFactor": "factorises a reduction",
    "Blockize": "wraps loops into a block (before tensorizing)",
    "Tensorize": "maps a block onto a registered TVM tensor intrinsic (names checked below)",
    # annotations: only the keys below, whose values are numbers or fixed-form strings
    "Annotate": "attaches a listed hint (keys and values checked below)",
    "Unannotate": "removes a listed hint",
    "Merge": "merges the outer loops of blocks (the FFT's CPU default schedule)",
    "EnterPostproc": "marks where postprocessing starts; does nothing",
}


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(1 << 31) <= v < (1 << 31)


def _ints(v) -> bool:
    return isinstance(v, list) and len(v) <= 64 and all(_int(x) for x in v)


def _tiling(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r'"[SR]{1,12}"', v) is not None


def _intrinsic(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r'"[a-z][a-z0-9_]{0,80}"', v) is not None


# Annotation keys our spaces and default schedules write, with the value each may take (an
# integer, a variable sampled earlier in the trace, or the fixed-form string shown). Every other
# key is refused, among them TVM's pragma_import_c / pragma_import_llvm (they splice source code
# into the module) and any pragma_* we do not write.
ANNOTATIONS: dict[str, tuple[str, Any]] = {
    "meta_schedule.tiling_structure": ("multi-level tiling's structure, e.g. \"SSRSRS\"", _tiling),
    "meta_schedule.parallel": ("how many jobs to parallelise into", _int),
    "meta_schedule.vectorize": ("the widest vector to form", _int),
    "meta_schedule.unroll_explicit": ("how far to unroll (explicit)", _int),
    "meta_schedule.unroll_implicit": ("how far to unroll (by pragma)", _int),
    "meta_schedule.cooperative_fetch": ("vector width of a cooperative shared-memory fetch", _int),
    "meta_schedule.thread_extent_low_inclusive": ("bound on the threads a block may bind", _int),
    "meta_schedule.thread_extent_high_inclusive": ("bound on the threads a block may bind", _int),
    "meta_schedule.random_compute_producer": ("asks for a random compute location", _int),
    "meta_schedule.auto_tensorize": ("a registered intrinsic's name", _intrinsic),
    "meta_schedule.auto_tensorize_init": ("a registered intrinsic's name", _intrinsic),
    "pragma_auto_unroll_max_step": ("LLVM/CUDA unrolling limit", _int),
    "pragma_unroll_explicit": ("unroll explicitly (0/1)", _int),
    "pragma_loop_partition_hint": ("let lowering partition the loop (0/1)", _int),
    "warp_execution": ("the loop runs on whole warps (0/1)", _int),
    # CUDA multi-level tiling on sm_80+: software pipelining of the shared-memory copies
    "software_pipeline_stage": ("a list of pipeline stages (integers)", _ints),
    "software_pipeline_order": ("a list of pipeline positions (integers)", _ints),
    "software_pipeline_async_stages": ("a list of asynchronous stages (integers)", _ints),
}

_CHECKED = {"Annotate", "Unannotate", "GetSBlock", "Bind", "CacheRead", "CacheWrite", "SetScope", "Tensorize"}
THREAD_AXES = {f"{k}.{a}" for k in ("blockIdx", "threadIdx", "vthread") for a in "xyz"} | {"vthread"}
SCOPES = {"global", "shared", "shared.dyn", "local", "warp"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,%d}" % (MAX_STRING - 1))
_VAR = re.compile(r"[a-z]\d{1,6}")  # a handle made by an earlier instruction: b3, l12, v8


def _walk(trace) -> None:
    """One pass over every value: depth, string lengths, scalar types (no recursion)."""
    stack = [(trace, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, list):
            if d >= MAX_DEPTH:
                raise TraceError(f"trace nests deeper than {MAX_DEPTH} levels")
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, str):  # str or TVM's String (a str) from a live schedule's trace
            if len(v) > MAX_STRING:
                raise TraceError(f"trace holds a string of {len(v)} characters (at most {MAX_STRING})")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise TraceError("trace holds a non-finite number")
        elif v is not None and not isinstance(v, int):
            raise TraceError(f"trace holds a {type(v).__name__}")


def _scalars(v):
    if isinstance(v, list):
        for x in v:
            yield from _scalars(x)
    else:
        yield v


def check_trace(trace: Any) -> None:
    """Raise :class:`TraceError` unless ``trace`` (a trace's JSON form) is one opsearch replays."""
    if not isinstance(trace, list) or len(trace) != 2 or not all(isinstance(p, list) for p in trace):
        raise TraceError("trace must be a MetaSchedule trace in JSON form ([instructions, decisions])")
    insts, decisions = trace
    if len(insts) > MAX_INSTRUCTIONS:
        raise TraceError(f"trace has {len(insts)} instructions (at most {MAX_INSTRUCTIONS})")
    if len(decisions) > MAX_DECISIONS:
        raise TraceError(f"trace has {len(decisions)} decisions (at most {MAX_DECISIONS})")
    _walk(trace)
    defined: set[str] = set()
    for i, inst in enumerate(insts):
        if not (isinstance(inst, list) and len(inst) == 4 and isinstance(inst[0], str)
                and all(isinstance(p, list) for p in inst[1:])):
            raise TraceError(f"instruction {i} is not [kind, inputs, attrs, outputs]")
        kind, inputs, attrs, outputs = inst
        if kind not in INSTRUCTIONS:
            raise TraceError(f"instruction {i}: '{kind[:40]}' is not an instruction opsearch's search spaces produce")
        _check_instruction(i, kind, inputs, attrs, defined)
        for o in outputs:
            if not (isinstance(o, str) and _VAR.fullmatch(o)):
                raise TraceError(f"instruction {i} ({kind}): output {str(o)[:40]!r} is not a handle name")
            defined.add(o)
    for d in decisions:
        if not (isinstance(d, list) and len(d) == 2 and _int(d[0]) and 0 <= d[0] < len(insts)):
            raise TraceError("trace decision is not [instruction index, value]")


def _check_instruction(i: int, kind: str, inputs: list, attrs: list, defined: set[str]) -> None:
    for v in _scalars(inputs):
        # inputs are handles defined earlier, numbers, None, or (Annotate's value) literals checked below
        if isinstance(v, str) and v not in defined and v != "None" and not v.startswith('"'):
            raise TraceError(f"instruction {i} ({kind}): input {v[:40]!r} is not defined by an earlier instruction")
    if kind not in _CHECKED:
        return
    where = f"instruction {i} ({kind})"
    if kind in ("Annotate", "Unannotate"):
        key = attrs[0] if len(attrs) == 1 else None
        if not isinstance(key, str) or key not in ANNOTATIONS:
            shown = str(key)[:60]
            raise TraceError(f"{where}: annotation '{shown}' is not one opsearch writes")
        if kind == "Annotate":
            value = inputs[1] if len(inputs) == 2 else None
            ok = ANNOTATIONS[key][1]
            if not ((isinstance(value, str) and value in defined) or ok(value)):
                raise TraceError(f"{where}: value {str(value)[:40]!r} of '{key}' is not {ANNOTATIONS[key][0]}")
    elif kind == "GetSBlock":
        if len(attrs) != 2 or not all(isinstance(a, str) and _NAME.fullmatch(a) for a in attrs):
            raise TraceError(f"{where}: block and function names must be plain identifiers")
    elif kind == "Bind":
        if len(attrs) != 1 or attrs[0] not in THREAD_AXES:
            raise TraceError(f"{where}: '{str(attrs[:1])[:40]}' is not a GPU thread axis")
    elif kind in ("CacheRead", "CacheWrite", "SetScope"):
        scope = next((a for a in attrs if isinstance(a, str)), None)
        if scope not in SCOPES:
            raise TraceError(f"{where}: storage scope {str(scope)[:40]!r} is not one of {', '.join(sorted(SCOPES))}")
    elif kind == "Tensorize":
        if not attrs or not _intrinsic(json.dumps(attrs[0]) if isinstance(attrs[0], str) else None):
            raise TraceError(f"{where}: '{str(attrs[:1])[:40]}' is not an intrinsic name")


def check_numbers(run_us: Any, mean_us: Any = None) -> None:
    """Latencies must be finite, non-negative numbers (failures store none)."""
    values = list(run_us or []) + ([] if mean_us is None else [mean_us])
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise TraceError(f"latency {str(v)[:20]} is not a finite, non-negative number of microseconds")
