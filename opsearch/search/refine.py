"""The end of a search: measure one-step neighbours of the fastest kernels found so far.

At the end of a workload's budget the evolutionary search mostly proposes candidates far from
its best (each child is several mutations away, picked by a cost model that ranks close
candidates little better than chance), while the kernels that beat a good schedule by a few
percent differ from it in one tile size, one unrolling choice or one compute location. Stock
MetaSchedule's picks for dilated_conv1d tcn_d8 on znver4 beat ours by ~5% that way: the same
kind of kernel, other batch and channel tiles (benchmarks/search_quality.md).

So the last ``TuneConfig.refine`` share of a workload's trials goes to a local search: each batch
takes the workload's fastest measured records, builds every schedule one decision away from them
(a prime factor moved between two levels of a tile, another unrolling or vectorising choice,
a compute location one loop further in or out), drops those already measured, and measures the
ones the cost model ranks highest, a quarter of the batch picked at random among the rest. A
neighbour that beats the best becomes the centre of the next batch (hill climbing with the
cost model as a filter). Decisions are changed in the trace, which is replayed and
post-processed exactly as MetaSchedule's own mutators do, so every candidate lies in the
design space and replays from its stored trace.

Each batch first measures the best record's decisions carried into the task's other design
spaces (:func:`sketch_transplants`): MetaSchedule's multi-level tiling offers each tiling with no
write cache and with the output written through a cache at one of two tile levels, and a local
search that only changes decisions never leaves its centre's sketch. On a rocketlake VM
(2026-12-07) all four of stock MetaSchedule's picks on vit_mlp_fc1 and adder_conv2d resnet20_c16
wrote through the cache and two of our ten did; with the transplants our vit_mlp_fc1 picks
went from 0.85 to 1.06 of stock's (two seeds, five fresh processes; benchmarks/search_quality.md).

On tcn_d8 (znver4 VM, 256 trials, three seeds, picks re-timed side by side in five processes)
refinement made the pick 8% faster (from 1,106 to 1,016 us), 0.99 of stock's; on context_d4
it changed nothing measurable (benchmarks/RESULTS.md).

``EXTRA_UNROLL`` (off by default) has each batch also measure the best record with that many
unrolling steps (:func:`unrolled_trace`; 512, which the space leaves out because it costs compile
time across a whole search, ``opsearch.search.space``): one compile per batch. On lightweight_conv1d
decoder_k15_causal (znver4 VM, 2026-12-07) both of stock MetaSchedule's picks unrolled 512 steps and
ran 4-7% slower with 64, and one of ours 5% faster with 512 (five fresh processes). With it on, none
of the picks of four workloads (two seeds each) unrolled 512: in one decoder_k15_causal run the
search timed the 512 variant of its best at 552 us, which then ran 269 us in fresh processes
(that best: 265). So it stays off until the search's timing of such kernels is understood.

``WIDE_SHARE`` (off by default) gives part of each centre's pool to tilings one larger move away
(:func:`wide_tile_neighbours`: a level's whole factor moved into another, two levels' factors
swapped, two primes exchanged between levels). On vit_mlp_fc1 (rocketlake) stock's pick had our
kernel's structure with tiles five and two prime moves from ours, one such move each. Measured
on znver4 with half the pool so (vit_mlp_fc1 and adder_conv2d resnet20_c16 over two seeds,
resnet50_s2 over one), the last 64 trials improved the best by 0.0-0.7% against 1.5-4.6% with
one-step moves alone (own measurements, medians over seeds), and the picks were no faster
(benchmarks/search_quality.md). So they stay off.

``SWAP_SHARE`` (off by default) gives part of each centre's pool to register tiles reshaped between
two loops (:func:`inner_swap_traces`), the move that separated our adder_conv2d resnet50_s2 picks
from stock's on znver4. Measured on an emeraldrapids VM (2026-12-07, a quarter of the pool, six
workloads, two seeds, picks timed in five fresh processes) it made the picks no faster anywhere and
slower on four: stock's over ours went from 1.02 to 0.88 on tcn_d8, 1.02 to 0.93 on adder_conv2d
resnet20_c16, 1.06 to 1.00 on vit_mlp_fc1 and 1.38 to 1.30 on mbv2_dw_e8 (resnet50_s2 1.04 either
way), and the searches' own bests were worse too: the moves take the place of one-step ones, as the
wide moves did. On znver4 (2026-12-07, four workloads, two seeds) it gave the best resnet50_s2
picks (1.10 of stock against 0.98) and lost the other three (geo-mean 0.95 against 0.96). So they
stay off.
"""

from __future__ import annotations

import logging
import random

log = logging.getLogger(__name__)

MIN_BUDGET = 64  # a workload's trials in a run below which none are kept for refinement
CENTRES = 3  # the fastest records whose neighbours a batch draws on
POOL_PER_BATCH = 4  # candidates built per batch slot, before the cost model picks
RANDOM_SHARE = 0.25  # of each batch, picked at random among the pool instead of by the cost model
WIDE_SHARE = 0.0  # of each centre's pool, tilings one larger move away (wide_tile_neighbours); 0: off
SWAP_SHARE = 0.0  # of each centre's pool, register tiles reshaped between two loops (inner_swap_traces); 0: off
EXTRA_UNROLL = 0  # unrolling steps the best record is also tried with, beyond the space's (unrolled_trace); 0: off


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def tile_neighbours(decision: list[int], max_innermost: int = 0) -> list[list[int]]:
    """Tilings one step from ``decision`` (the factors of one loop, outermost first): a prime
    factor of one level moved to another, the product kept; the innermost factor at most
    ``max_innermost`` when that is positive."""
    out = []
    for i, f in enumerate(decision):
        for p in _primes(f):
            for j in range(len(decision)):
                if j == i:
                    continue
                new = list(decision)
                new[i] //= p
                new[j] *= p
                if max_innermost > 0 and new[-1] > max_innermost:
                    continue
                out.append(new)
    return out


def wide_tile_neighbours(decision: list[int], max_innermost: int = 0) -> list[list[int]]:
    """Tilings of the same product that are more than one prime move from ``decision`` but one
    move of a larger kind: one level's whole factor moved into another level, the factors of two
    levels swapped, or a prime factor of one level exchanged for another prime of a second level.
    The innermost factor at most ``max_innermost`` when that is positive; none of
    :func:`tile_neighbours`' tilings, no duplicates."""
    near = {tuple(t) for t in tile_neighbours(decision, 0)}
    seen, out = {tuple(decision)} | near, []

    def add(new):
        if (max_innermost > 0 and new[-1] > max_innermost) or tuple(new) in seen:
            return
        seen.add(tuple(new))
        out.append(new)

    n = len(decision)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            moved = list(decision)  # all of level i into level j
            moved[j] *= moved[i]
            moved[i] = 1
            add(moved)
            if i < j:
                swapped = list(decision)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                add(swapped)
            for p in _primes(decision[i]):  # p from i to j, q from j to i
                for q in _primes(decision[j]):
                    if p != q:
                        new = list(decision)
                        new[i] = new[i] // p * q
                        new[j] = new[j] // q * p
                        add(new)
    return out


def _innermost_limit(inst) -> int:
    """The largest innermost factor a SamplePerfectTile instruction allows (0: any)."""
    return int(inst.attrs[1]) if len(inst.attrs) > 1 else 0


def inner_swaps(a: list[int], b: list[int], max_innermost: int = 0) -> list[tuple[list[int], list[int]]]:
    """Pairs of tilings (a', b') that reshape the innermost tile between two loops: ``a``'s whole
    innermost factor moved to one of its other levels, and one prime factor of one of ``b``'s other
    levels moved into ``b``'s innermost level (``b``'s innermost at most ``max_innermost`` when
    that is positive). Each pair is two prime-factor moves or more from (a, b), in two decisions;
    empty when ``a``'s innermost factor is 1 or ``b`` has nothing to move in."""
    if len(a) < 2 or len(b) < 2 or a[-1] == 1:
        return []
    outs_a = []
    for k in range(len(a) - 1):
        new = list(a)
        new[k] *= new[-1]
        new[-1] = 1
        outs_a.append(new)
    outs_b = [t for t in tile_neighbours(b, max_innermost) if t[-1] > b[-1]]  # a prime moved in
    return [(x, y) for x in outs_a for y in outs_b]


def inner_swap_traces(trace) -> list:
    """Every trace whose register tile is reshaped between two loops (:func:`inner_swaps`) across
    each ordered pair of ``trace``'s tilings of three or more levels (the spatial loops of
    MetaSchedule's multi-level tiling; a reduction loop's two levels are left alone); two
    decisions changed, postprocessing removed, not yet replayed.

    Why: stock MetaSchedule's picks for adder_conv2d resnet50_s2 on znver4 (2026-12-07) keep one
    output channel in the register tile and 7-28 output columns, ours 4-32 channels, in the same
    sketch. From ours that kernel is five or more prime moves away, which one-step refinement did
    not make; it is one move of this kind and one prime move. Off by default (``SWAP_SHARE``:
    measured, it made the searches worse; see the module docstring)."""
    tiles = []
    for inst in trace.insts:
        if inst.kind.name != "SamplePerfectTile":
            continue
        decision = trace.get_decision(inst)
        if decision is not None and len(decision) >= 3:
            tiles.append((inst, [int(x) for x in decision], _innermost_limit(inst)))
    out = []
    for i, (ia, a, _) in enumerate(tiles):
        for j, (ib, b, limit) in enumerate(tiles):
            if i == j:
                continue
            for na, nb in inner_swaps(a, b, limit):
                out.append(trace.with_decision(ia, na, remove_postproc=True).with_decision(ib, nb, remove_postproc=True))
    return out


def _unroll_choice(trace):
    """The SampleCategorical instruction whose value is ``trace``'s unrolling limit (the input of
    a ``meta_schedule.unroll_explicit``/``unroll_implicit`` annotation), or None."""
    rvs = [inst.inputs[1] for inst in trace.insts if inst.kind.name == "Annotate"
           and str(inst.attrs[0]) in ("meta_schedule.unroll_explicit", "meta_schedule.unroll_implicit")]
    for inst in trace.insts:
        if inst.kind.name == "SampleCategorical" and any(inst.outputs[0].same_as(rv) for rv in rvs):
            return inst
    return None


def unrolled_trace(trace, steps: int):
    """``trace`` with its unrolling choice also offering ``steps`` and taking it (postprocessing
    removed, not yet replayed); None when ``trace`` has no unrolling choice or already offers it.

    Why: the space stops unrolling at 64 steps (``opsearch.search.space``: 512 costs most of a
    search's compile time and rarely wins), but on a znver4 VM (2026-12-07) both of stock
    MetaSchedule's picks for lightweight_conv1d decoder_k15_causal unrolled 512 steps, and re-timed
    in five fresh processes they ran 4-7% slower with 64; our own pick ran 5% faster with 512."""
    from tvm.s_tir.schedule import Instruction, Trace

    choice = _unroll_choice(trace)
    if choice is None:
        return None
    values = [int(v) for v in choice.attrs[0]]
    if steps in values:
        return None
    new = Instruction(choice.kind, list(choice.inputs), [values + [steps], [1.0 / (len(values) + 1)] * (len(values) + 1)],
                      list(choice.outputs))
    insts, decisions = [], {}
    for inst in trace.insts:
        if inst.kind.name == "EnterPostproc":
            break
        d = trace.get_decision(inst)
        if inst.same_as(choice):
            inst, d = new, len(values)
        insts.append(inst)
        if d is not None:
            decisions[inst] = d
    return Trace(insts, decisions)


def decision_neighbours(inst, decision, wide: bool = False) -> list:
    """Other decisions for one sampling instruction of a trace (empty if it has none to offer);
    with ``wide``, only the tilings of :func:`wide_tile_neighbours` (other kinds have none)."""
    kind = inst.kind.name
    if kind == "SamplePerfectTile":
        pick = wide_tile_neighbours if wide else tile_neighbours
        return pick([int(x) for x in decision], _innermost_limit(inst))
    if wide:
        return []
    if kind == "SampleCategorical":
        probs = [float(p) for p in inst.attrs[1]]
        return [i for i, p in enumerate(probs) if p > 0 and i != int(decision)]
    if kind == "SampleComputeLocation":
        d = int(decision)
        return [x for x in (d - 1, d + 1) if x >= -2]  # -2: inline, -1: root, else a loop index
    return []


def neighbour_traces(trace, wide: bool = False) -> list:
    """Every trace one decision away from ``trace`` (postprocessing removed, not yet replayed);
    with ``wide``, those whose one changed decision is a tiling of :func:`wide_tile_neighbours`."""
    out = []
    for inst in trace.insts:
        decision = trace.get_decision(inst)
        if decision is None:
            continue
        for new in decision_neighbours(inst, decision, wide):
            out.append(trace.with_decision(inst, new, remove_postproc=True))
    return out


def _sampling(trace) -> list:
    """(instruction, decision) of each sampling instruction of ``trace``, in order."""
    return [(inst, d) for inst in trace.insts if (d := trace.get_decision(inst)) is not None]


def _signature(inst, decision) -> tuple:
    """What a decision of ``inst`` must match to carry over to another sketch's instruction."""
    kind = inst.kind.name
    if kind == "SamplePerfectTile":
        return kind, len(decision), str(inst.attrs[1]) if len(inst.attrs) > 1 else ""
    if kind == "SampleCategorical":
        return kind, str(inst.attrs[0])
    return (kind,)


def sketch_transplants(trace, sketches) -> list:
    """``trace``'s decisions carried over to each other design space (``sketches``: their traces)
    whose sampling instructions are the same kinds in the same order (the same tiles, unrolling
    and compute-location choices): the same kernel with another cache or reuse structure, such as
    MetaSchedule's write-cache variants of a multi-level tiling. Postprocessing removed, not yet
    replayed (:func:`build` drops those that do not replay to the same decisions)."""
    own = _sampling(trace)
    want = [_signature(i, d) for i, d in own]
    out = []
    for sk in sketches:
        theirs = _sampling(sk)
        if len(theirs) != len(own) or [_signature(i, d) for i, d in theirs] != want:
            continue
        new = sk
        for (inst, _), (_, decision) in zip(theirs, own):
            new = new.with_decision(inst, decision, remove_postproc=True)
        out.append(new)
    return out


def _decisions(trace) -> list[str]:
    return [str(d) for _, d in _sampling(trace)]


def build(mod, trace, postprocs, seed: int):
    """The schedule of ``trace`` (postprocessing removed) on ``mod``, post-processed; None if it
    does not replay, a postprocessor rejects it, or replaying changed a decision: TVM replaces a
    compute location that is not valid (any more) with a valid one, so moving one block can move
    another, and that candidate is not one step from its centre."""
    from tvm.s_tir import Schedule

    try:
        sch = Schedule(mod, seed=seed, debug_mask="none", error_render_level="none")
        trace.apply_to_schedule(sch, remove_postproc=True)
        if _decisions(sch.trace) != _decisions(trace):
            return None
        sch.enter_postproc()
        for post in postprocs:
            if not post.apply(sch):
                return None
    except Exception:  # noqa: BLE001 - TVM raises many types; any of them means "not a candidate"
        return None
    return sch


class Refiner:
    """Proposes the batches of one task's refinement (see the module docstring).

    ``top(k)`` returns the task's k fastest measured MetaSchedule TuningRecords; ``seen()`` the
    module hashes already measured for the task's workload on this target (any run)."""

    def __init__(self, top, seen, seed: int = 0):
        self.top = top
        self.seen = seen
        self.rng = random.Random(seed)
        self.proposed: set[str] = set()
        self.sketches = None  # the traces of the task's design spaces, read on first use
        self.transplanted = 0  # candidates proposed by sketch_transplants
        self.unrolled = 0  # candidates proposed by unrolled_trace

    def _transplants(self, context, best, postprocs, seen) -> list:
        """The best record's decisions in every other design space, built, not yet measured."""
        if self.sketches is None:
            try:
                self.sketches = [sch.trace for sch in context.generate_design_space()]
            except Exception as e:  # noqa: BLE001 - no sketches: refinement goes on without them
                log.debug("refinement: no design spaces to transplant into: %s", e)
                self.sketches = []
        return self._built_unseen(context.mod, sketch_transplants(best.trace, self.sketches), postprocs, seen)

    def _unrolled(self, context, best, postprocs, seen) -> list:
        """The best record with ``EXTRA_UNROLL`` unrolling steps, built, not yet measured: [] or
        one (hash, schedule)."""
        tr = unrolled_trace(best.trace, EXTRA_UNROLL) if EXTRA_UNROLL else None
        return self._built_unseen(context.mod, [tr] if tr is not None else [], postprocs, seen)

    def _built_unseen(self, mod, traces, postprocs, seen) -> list:
        """(module hash, schedule) of each of ``traces`` that builds (:func:`build`) into a module
        not in ``seen`` and not built from an earlier one of them."""
        from ..db.replay import module_hash

        out, hashes = [], set()
        for tr in traces:
            sch = build(mod, tr, postprocs, self.rng.randrange(1, 2**31 - 1))
            if sch is not None and (h := module_hash(sch.mod)) not in seen and h not in hashes:
                hashes.add(h)
                out.append((h, sch))
        return out

    def _mixed(self, near: list, wide: list, swap: list) -> list:
        """The lists shuffled and merged: while ``near`` and another last, each next trace is a
        wide one with chance ``WIDE_SHARE``, a swapped one with chance ``SWAP_SHARE``, else a near
        one; then the rest of each, in that order."""
        for xs in (near, wide, swap):
            self.rng.shuffle(xs)
        out = []
        while near and (wide or swap):
            u = self.rng.random()
            if wide and u < WIDE_SHARE:
                out.append(wide.pop())
            elif swap and WIDE_SHARE <= u < WIDE_SHARE + SWAP_SHARE:
                out.append(swap.pop())
            else:
                out.append(near.pop())
        return out + near + wide + swap

    def candidates(self, context, cost_model, n: int) -> list:
        """Up to ``n`` measure candidates, or [] when the best records have no unmeasured
        neighbour left (the caller then goes back to the evolutionary search)."""
        from tvm.s_tir import meta_schedule as ms

        from ..db.replay import module_hash

        records = self.top(CENTRES)
        if not records:
            return []
        seen = self.seen() | self.proposed
        postprocs = list(context.space_generator.postprocs)
        # the best kernel in the other sketches first: the cost model need not rank them
        moved = self._transplants(context, records[0], postprocs, seen)
        first = (moved + self._unrolled(context, records[0], postprocs, seen | {h for h, _ in moved}))[:n]
        self.transplanted += min(len(moved), n)
        self.unrolled += len(first) - min(len(moved), n)
        seen = seen | {h for h, _ in first}
        # the best record's neighbours fill half the pool, the others share the rest
        quota = POOL_PER_BATCH * (n - len(first))
        shares = [quota // 2] + [max(1, quota // 2 // max(1, len(records) - 1))] * (len(records) - 1)
        pool, hashes = [], set()
        for rec, share in zip(records, shares if quota > 0 else []):
            traces = self._mixed(neighbour_traces(rec.trace), neighbour_traces(rec.trace, wide=True) if WIDE_SHARE else [],
                                 inner_swap_traces(rec.trace) if SWAP_SHARE else [])
            got = 0
            for tr in traces:
                if got >= share:
                    break
                sch = build(context.mod, tr, postprocs, self.rng.randrange(1, 2**31 - 1))
                if sch is None:
                    continue
                h = module_hash(sch.mod)
                if h in seen or h in hashes:
                    continue
                hashes.add(h)
                pool.append((h, sch))
                got += 1
        args_info = ms.arg_info.ArgInfo.from_prim_func(context.mod["main"])
        self.proposed.update(h for h, _ in first)
        lead = [ms.MeasureCandidate(sch, args_info) for _, sch in first]
        n -= len(first)
        if not pool or n <= 0:
            return lead
        cands = [ms.MeasureCandidate(sch, args_info) for _, sch in pool]
        picked = list(range(len(pool)))
        if len(pool) > n:
            by_model = max(0, n - round(n * RANDOM_SHARE))
            try:
                scores = list(cost_model.predict(context, cands)) if cost_model is not None else None
            except Exception as e:  # noqa: BLE001 - an untrained or failing model: pick at random
                log.debug("refinement: cost model did not score the pool: %s", e)
                scores = None
            order = sorted(picked, key=lambda i: -scores[i]) if scores is not None else self.rng.sample(picked, len(picked))
            head, rest = order[:by_model], order[by_model:]
            picked = head + self.rng.sample(rest, n - len(head))
        self.proposed.update(pool[i][0] for i in picked)
        return lead + [cands[i] for i in picked]
