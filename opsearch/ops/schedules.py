"""Generic default (untuned) schedules: the fair baseline every operator gets for free.

CPU: inline injective producers (padding, shifts), then for each remaining stage parallelise the
outer spatial loops over the cores, move reductions inside, and vectorise the innermost spatial
loop (its width divides the extent, so no predicate). CUDA: fuse the spatial loops of each stage
and bind them to blocks and threads so it builds; reductions run sequentially per thread.
"""

from __future__ import annotations


def _inline_producers(sch, keep=()) -> list:
    """Inline every block that can be inlined (except those named in ``keep``); return the
    remaining blocks in order."""
    root = sch.get_sblock("root")
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)} | set(keep)
    # Padding stays a stage: inlined, its bounds test sits in the innermost loop of the
    # consumer and defeats vectorisation.
    outputs |= {sch.get(b).name_hint for b in sch.get_child_blocks(root) if sch.get(b).name_hint.endswith("pad")}
    changed = True
    while changed:
        changed = False
        for b in sch.get_child_blocks(root):
            if sch.get(b).name_hint in outputs:
                continue
            try:
                sch.compute_inline(b)
                changed = True
            except Exception:  # a reduction or multi-consumer stage stays a stage
                continue
    return list(sch.get_child_blocks(root))


def _split_iters(sch, block):
    """Loops of ``block`` split into (spatial, reduction) by the block's iteration types."""
    loops = sch.get_loops(block)
    kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
    n_spatial = sum(1 for k in kinds if k == 0)
    return list(loops[:n_spatial]), list(loops[n_spatial:])


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def default_cpu(sch, target, keep=(), skip=(), vector_bytes: int = 32) -> None:
    """``keep``: stages not to inline; ``skip``: stages the caller schedules itself."""
    for block in _inline_producers(sch, keep):
        if sch.get(block).name_hint not in skip:
            parallel_vectorize(sch, block, int(target.attrs.get("num-cores", 1)), vector_bytes)


def parallel_vectorize(sch, block, cores: int, vector_bytes: int = 32, loops=None) -> None:
    """Parallelise the outer spatial loops of ``block`` and vectorise the innermost one, with
    the reductions in between. ``loops=(spatial, reduce)`` overrides the block's own loops
    (e.g. after the caller split them)."""
    spatial, reduce = loops if loops is not None else _split_iters(sch, block)
    if not spatial:
        return
    lanes_max = vector_bytes // 4
    inner = None
    last = _extent(sch, spatial[-1])
    for lanes in (2 * lanes_max, lanes_max, lanes_max // 2) if lanes_max >= 4 else ():
        if last % lanes == 0:
            outer, inner = sch.split(spatial[-1], [None, lanes])
            spatial = spatial[:-1] + [outer]
            break
    if inner is not None and reduce:
        sch.reorder(*spatial, *reduce, inner)
    # Fuse leading spatial loops until there is enough parallel work for the cores.
    n, work = 0, 1
    while n < len(spatial) and work < 8 * cores:
        work *= _extent(sch, spatial[n])
        n += 1
    fused = sch.fuse(*spatial[:n]) if n > 1 else spatial[0]
    if work > 1:
        sch.parallel(fused)
    if inner is not None:
        sch.vectorize(inner)
    if reduce:
        sch.decompose_reduction(block, reduce[0])


def block_names(sch) -> set[str]:
    """Names of the blocks directly under the root (optional stages: padding, bias)."""
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}


def float_lanes(target) -> int:
    """float32 lanes of the target's widest vector: 16 with AVX-512, else 8."""
    from tvm.target import codegen

    return 16 if codegen.target_has_features("avx512f", target) else 8


def weight_pack(sch, block, cores: int) -> None:
    """A weight packing stage [.., O/16, C/16, KH, KW, 16c, 16o] <- w[.., O, C, KH, KW]: loops in
    the source's order (o, c, kh, kw innermost), so reads are contiguous and writes land in one
    16 x 16 x KH x KW block; parallel over the blocks."""
    *lead, i, j, ci, oi = sch.get_loops(block)
    sch.reorder(*lead, oi, ci, i, j)
    fused = sch.fuse(*lead) if len(lead) > 1 else lead[0]
    if cores > 1:
        sch.parallel(fused)


def accumulate_in_tiles(sch, block, order, at, init, outer, unroll, vector, cores: int):
    """The register-tile pattern of the hand-written CPU defaults: the loops of the reduction
    ``block`` in ``order``; its output accumulated in a local tile, initialised at reduction
    loop ``init`` and written back under loop ``at``; the ``outer`` loops fused and run in
    parallel; the ``unroll`` loops unrolled; ``vector`` (None: none) vectorised, in the tile and
    in its write-back. Returns the fused outer loop."""
    sch.reorder(*order)
    tile = sch.cache_write(block, 0, "global")
    sch.reverse_compute_at(tile, at)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if cores > 1:
        sch.parallel(fused)
    for loop in unroll:
        sch.unroll(loop)
    if vector is not None:
        sch.vectorize(vector)
    sch.decompose_reduction(block, init)
    if vector is not None:
        sch.vectorize(sch.get_loops(tile)[-1])
    return fused


def blocked_conv_cpu(sch, cores: int) -> None:
    """The stages around a blocked convolution (pack_pad, unpack, an optional bias) in the
    generic way, the convolution itself in register tiles (:func:`conv2d_nchwc_tiles`)."""
    names = block_names(sch)
    for name in ("pack_pad", "unpack", "out"):
        if name in names:
            parallel_vectorize(sch, sch.get_sblock(name), cores)
    conv2d_nchwc_tiles(sch, sch.get_sblock("conv"), cores)


def conv2d_nchwc_tiles(sch, block, cores: int) -> None:
    """The blocked convolution (te_util.conv2d_nchwc) in register tiles: up to 8 output columns
    x 2 output-channel blocks x 16 lanes of accumulators, held in a local tile over the whole
    reduction (input-channel blocks, taps, 16 lanes unrolled by 4): each input value is
    broadcast once for the tile's channel blocks, each weight vector loaded once for its
    columns. Parallel over (sample, channel-block pair, output row)."""
    b, ko, i, j, oi, rco, ry, rx, rci = sch.get_loops(block)
    wo, kb = _extent(sch, j), _extent(sch, ko)
    cols = max(t for t in range(1, 9) if wo % t == 0)
    koo, koi = sch.split(ko, [None, 2 if kb % 2 == 0 else 1])
    jo, ji = sch.split(j, [None, cols])
    rcio, rcii = sch.split(rci, [None, 4])
    accumulate_in_tiles(sch, block, (b, koo, i, jo, rco, ry, rx, rcio, rcii, koi, ji, oi), at=jo, init=rco,
                        outer=(b, koo, i), unroll=(rcii, koi, ji), vector=oi, cores=cores)


def conv2d_tiles_skipping_padding(sch, block, row_block: int, lanes: int, cores: int) -> None:
    """An NCHW convolution ``block`` (loops n, o, i, j, rc, ry, rx; unit column stride, output
    width a multiple of ``lanes``) that reads its zero padding inlined, the bounds tests marked
    likely (te_util.pad): register tiles of up to 16 output channels x one vector of columns,
    the taps and input channels inside, output row by row; parallel over (sample, channel tile).
    The row blocks (``row_block`` rows), the column vectors and both taps carry TVM's
    ``pragma_loop_partition_hint``, so lowering splits them where a tap reads only padding and
    drops those taps, the work oneDNN skips too (31% of context_d16's). The split is exact when
    the padding's edges fall on block and vector edges (padding a multiple of the dilation, as
    in the "same" dilated convolutions); elsewhere the border tiles keep their bounds tests."""
    b, k, i, j, rc, ry, rx = sch.get_loops(block)
    out_ch = _extent(sch, k) * _extent(sch, b)
    widths = [t for t in ((16, 8, 4) if lanes >= 16 else (8, 4)) if _extent(sch, k) % t == 0]
    kt = next((t for t in widths if out_ch // t >= 2 * cores), widths[-1])
    ko, ki = sch.split(k, [None, kt])
    io, im = sch.split(i, [None, row_block])
    jo, ji = sch.split(j, [None, lanes])
    accumulate_in_tiles(sch, block, (b, ko, io, im, jo, ry, rx, rc, ki, ji), at=jo, init=ry,
                        outer=(b, ko), unroll=(ki,), vector=ji, cores=cores)
    for loop in (io, jo, ry, rx):
        sch.annotate(loop, "pragma_loop_partition_hint", 1)


def default_cuda(sch, target, keep=(), threads: int = 128) -> None:
    for block in _inline_producers(sch, keep):
        spatial, _ = _split_iters(sch, block)
        if not spatial:
            continue
        fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        t = min(threads, _extent(sch, fused))
        bx, tx = sch.split(fused, [None, t])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
