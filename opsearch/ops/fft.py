"""Family "fft": causal long convolution y = k * u per channel, through FFTs of length 2N.

Default (``n1`` = 0): an O(N log N) Stockham FFT, every stage one TE compute. The real signals
of length M = 2L (L >= N, 5-smooth; zero-padded) are packed as complex signals of length L
(z[p] = x[2p] + i x[2p+1]) and transposed so channels are innermost: every stage then
vectorises over channels. The default schedule runs all stages of one chunk of channels (one
vector wide) before the next chunk, in one parallel loop, so a chunk's data stays in the core's
L2. u's rows and the filter k go through the forward stages as two chains; one
elementwise stage unpacks both real spectra, multiplies them
and packs the product for the inverse (with the 1/M scale); the inverse stages follow, and a
last stage unpacks and transposes back to [B, H, N] (only t < N is computed). A radix-R stage
(R = 8, 4, 2, 3, 5) reads R streams x[j + r L/R] and writes its R outputs already multiplied by
the next stage's twiddles (constant tables). Its output axes (a, k, b) make the radix index k
a loop: the default schedule unrolls it, which folds the per-k Select and lets the compiler
share the butterfly between the R outputs.

With an explicit ``n1`` the older four-step (Monarch) form is used: the FFT as DFT-matrix
products. With N' = N1 * N2 (N' >= N, see below), the FFT
length is M = 2N' = M1 * M2 with M1 = 2*N1, M2 = N2; input index n = M2*n1 + n2, frequency
k = k1 + M1*k2:

    X[k1, k2] = sum_n2 W_M2^(n2 k2) * W_M^(n2 k1) * sum_n1 x[M2 n1 + n2] * W_M1^(n1 k1)

Only n1 < N1 carries data (the second half of the padded input is zero), and the inverse only
produces t < N'. Stages: a size-M1 DFT over n1 (real input), a twiddle, a size-M2 DFT over n2,
the pointwise product with the filter's spectrum (computed by the same stages), and the inverse
in reverse order with the 1/M scale folded into the last DFT matrix. Complex values are re/im
tensor pairs; DFT matrices and twiddles are constant inputs computed in float64.

Lengths: N is used as is when it has a factor pair N1 * N2 with N1 within a factor of two of
sqrt(N); otherwise (primes, N = 2 * prime, ...) u and k are zero-padded to the next length that
has one, which leaves the causal result for t < N unchanged. The attribute ``n1`` fixes N1 (it
must divide N); 0 chooses the balanced pair.
"""

from __future__ import annotations

import math

from .fft_stages import dft_at, plan, smooth_length, stockham_stages
from .registry import register
from .spec import Attr, OpSpec, TensorParam


@register
class FFTConv1d(OpSpec):
    name = "fft_conv1d"
    family = "fft"
    doc = "Causal long convolution y = k * u (per channel) via FFTs of length 2N (Stockham; n1 > 0: four-step DFT matrices)."
    tensors = (TensorParam("u", ("B", "H", "N")), TensorParam("k", ("H", "N")))
    attrs = (Attr("n1", "int", 0, minimum=0, doc="0: O(N log N) Stockham FFT; > 0: four-step DFT-matrix FFT with this first factor"),)
    tolerance = 1e-4
    # Hyena / FlashFFTConv: model width 768-864, sequence 1K-16K.
    examples = {
        "hyena_1k": dict(u=[4, 64, 1024], k=[64, 1024]),
        "hyena_4k": dict(u=[1, 64, 4096], k=[64, 4096]),
        "hyena_16k": dict(u=[1, 16, 16384], k=[16, 16384]),
    }

    def check(self, a):
        b, h, n = a["u"]
        if a["k"] != (h, n):
            raise self.fail("k", f"must have shape [H, N] = [{h}, {n}], got {list(a['k'])}")
        if a["n1"] and n % a["n1"]:
            raise self.fail("n1", f"({a['n1']}) must divide the sequence length N={n}")

    def output_shape(self, a):
        return a["u"]

    def _dims(self, a):
        npad, n1, n2 = plan(a["u"][2], a["n1"])
        return npad, n1, n2, 2 * n1, n2  # N', N1, N2, M1, M2

    def _flops_four_step(self, a):
        b, h, n = a["u"]
        _, n1, _, m1, m2 = self._dims(a)
        m = m1 * m2

        def forward(rows):  # real DFT over n1, twiddle, complex DFT over n2
            return rows * (4 * m2 * m1 * n1 + 6 * m + 8 * m * m2)

        inverse = b * h * (8 * m * m2 + 6 * m + 4 * n * m1)
        return forward(b * h) + forward(h) + 6 * b * h * m + inverse

    def _constants_four_step(self, a):
        import numpy as np

        _, n1, _, m1, m2 = self._dims(a)
        m = m1 * m2

        def w(rows, cols, size, sign):
            e = np.exp(sign * 2j * np.pi * np.outer(np.arange(rows), np.arange(cols)) / size)
            return e.real.astype(np.float32), e.imag.astype(np.float32)

        c1r, c1i = w(n1, m1, m1, -1)  # [n1, k1]
        twr, twi = w(m2, m1, m, -1)  # [n2, k1]
        w2r, w2i = w(m2, m2, m2, -1)  # [n2, k2] (symmetric)
        itwr, itwi = w(m1, m2, m, +1)  # [k1, t2]
        e1 = np.exp(2j * np.pi * np.outer(np.arange(m1), np.arange(n1)) / m1) / m  # [k1, t1], scaled
        return {
            "c1r": c1r, "c1i": c1i, "twr": twr, "twi": twi, "w2r": w2r, "w2i": w2i,
            "itwr": itwr, "itwi": itwi,
            "e1r": e1.real.astype(np.float32), "e1i": e1.imag.astype(np.float32),
        }

    def _compute_four_step(self, a, ins):
        from tvm import te

        from .te_util import pad

        b, h, n = a["u"]
        npad, n1, n2, m1, m2 = self._dims(a)
        c = ins

        def spectrum(sig, lead, tag):
            """Forward FFT of a real signal [*lead, N] -> (re, im) [*lead, M1, M2] in (k1, k2)."""
            sp = pad(sig, [(0, 0)] * len(lead) + [(0, npad - n)], f"{tag}_pad")
            r1 = te.reduce_axis((0, n1), f"{tag}_n1")
            ar = te.compute((*lead, m2, m1), lambda *i: te.sum(sp[(*i[:-2], m2 * r1 + i[-2])] * c["c1r"][r1, i[-1]], axis=r1), name=f"{tag}_dft1_re")
            r1b = te.reduce_axis((0, n1), f"{tag}_n1b")
            ai = te.compute((*lead, m2, m1), lambda *i: te.sum(sp[(*i[:-2], m2 * r1b + i[-2])] * c["c1i"][r1b, i[-1]], axis=r1b), name=f"{tag}_dft1_im")
            tr, ti = c["twr"], c["twi"]
            br = te.compute(ar.shape, lambda *i: ar[i] * tr[i[-2], i[-1]] - ai[i] * ti[i[-2], i[-1]], name=f"{tag}_tw_re")
            bi = te.compute(ar.shape, lambda *i: ar[i] * ti[i[-2], i[-1]] + ai[i] * tr[i[-2], i[-1]], name=f"{tag}_tw_im")
            wr, wi = c["w2r"], c["w2i"]
            r2 = te.reduce_axis((0, m2), f"{tag}_n2")
            xr = te.compute((*lead, m1, m2), lambda *i: te.sum(br[(*i[:-2], r2, i[-2])] * wr[r2, i[-1]] - bi[(*i[:-2], r2, i[-2])] * wi[r2, i[-1]], axis=r2), name=f"{tag}_dft2_re")
            r2b = te.reduce_axis((0, m2), f"{tag}_n2b")
            xi = te.compute((*lead, m1, m2), lambda *i: te.sum(br[(*i[:-2], r2b, i[-2])] * wi[r2b, i[-1]] + bi[(*i[:-2], r2b, i[-2])] * wr[r2b, i[-1]], axis=r2b), name=f"{tag}_dft2_im")
            return xr, xi

        ur, ui = spectrum(c["u"], (b, h), "u")
        kr, ki = spectrum(c["k"], (h,), "k")
        pr = te.compute(ur.shape, lambda bb, hh, i, j: ur[bb, hh, i, j] * kr[hh, i, j] - ui[bb, hh, i, j] * ki[hh, i, j], name="prod_re")
        pi = te.compute(ur.shape, lambda bb, hh, i, j: ur[bb, hh, i, j] * ki[hh, i, j] + ui[bb, hh, i, j] * kr[hh, i, j], name="prod_im")
        wr, wi = c["w2r"], c["w2i"]
        # inverse DFT over k2 (conjugate of the symmetric W_M2) -> [B, H, k1, t2]
        s2 = te.reduce_axis((0, m2), "i_k2")
        qr = te.compute((b, h, m1, m2), lambda bb, hh, i, t: te.sum(pr[bb, hh, i, s2] * wr[s2, t] + pi[bb, hh, i, s2] * wi[s2, t], axis=s2), name="idft2_re")
        s2b = te.reduce_axis((0, m2), "i_k2b")
        qi = te.compute((b, h, m1, m2), lambda bb, hh, i, t: te.sum(pi[bb, hh, i, s2b] * wr[s2b, t] - pr[bb, hh, i, s2b] * wi[s2b, t], axis=s2b), name="idft2_im")
        tr, ti = c["itwr"], c["itwi"]
        rr = te.compute(qr.shape, lambda bb, hh, i, t: qr[bb, hh, i, t] * tr[i, t] - qi[bb, hh, i, t] * ti[i, t], name="itw_re")
        ri = te.compute(qr.shape, lambda bb, hh, i, t: qr[bb, hh, i, t] * ti[i, t] + qi[bb, hh, i, t] * tr[i, t], name="itw_im")
        er, ei = c["e1r"], c["e1i"]
        s1 = te.reduce_axis((0, m1), "i_k1")
        return te.compute(
            (b, h, n),
            lambda bb, hh, t: te.sum(rr[bb, hh, s1, t % m2] * er[s1, t // m2] - ri[bb, hh, s1, t % m2] * ei[s1, t // m2], axis=s1),
            name="idft1",
        )

    # Elementwise stages (twiddles, spectrum product) are read many times by the next DFT:
    # inlining them would recompute a complex product per matrix element, so they stay stages.
    keep_stages = ("u_tw_re", "u_tw_im", "k_tw_re", "k_tw_im", "prod_re", "prod_im", "itw_re", "itw_im")

    def _schedule_cpu_four_step(self, sch, target, a):
        from .schedules import default_cpu, parallel_vectorize

        default_cpu(sch, target, keep=self.keep_stages, skip=("idft1",))
        # The last stage reads [k1, t % M2] and [k1, t // M2]: split t by M2 so the indices
        # become affine and vectors never straddle a row. With a padded length N is not a
        # multiple of M2 and the stage stays scalar.
        block = sch.get_sblock("idft1")
        b, h, t, s1 = sch.get_loops(block)
        n, m2 = a["u"][2], self._dims(a)[4]
        cores = int(target.attrs.get("num-cores", 1))
        if n % m2 == 0:
            t1, t2 = sch.split(t, [None, m2])
            parallel_vectorize(sch, block, cores, loops=([b, h, t1, t2], [s1]))
        else:
            parallel_vectorize(sch, block, cores, vector_bytes=0, loops=([b, h, t], [s1]))


    # ------------------------------------------------------------------ dispatch
    # ``n1`` = 0 (the default) takes the O(N log N) Stockham path; an explicit ``n1`` asks for
    # the four-step factorisation N = n1 * (N / n1) and gets it.
    def _flops(self, a):
        return self._flops_four_step(a) if a["n1"] else self._flops_stockham(a)

    def constants(self, a):
        return self._constants_four_step(a) if a["n1"] else self._constants_stockham(a)

    def compute(self, a, ins):
        return self._compute_four_step(a, ins) if a["n1"] else self._compute_stockham(a, ins)

    def schedule_cpu(self, sch, target, a):
        if a["n1"]:
            self._schedule_cpu_four_step(sch, target, a)
        else:
            self._schedule_cpu_stockham(sch, target, a)

    def schedule_cuda(self, sch, target, a):
        from .schedules import default_cuda

        if a["n1"]:
            default_cuda(sch, target, keep=self.keep_stages)
            return
        # Stages compute re and im as two blocks of one loop nest: bind each nest once.
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            if sch.get(block).name_hint.endswith("_v1"):
                continue
            loops = sch.get_loops(block)
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            t = min(128, int(sch.get(fused).extent))
            bx, tx = sch.split(fused, [None, t])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")

    # ------------------------------------------------------------------ Stockham path
    def _stockham_dims(self, a):
        """(L, stages): the complex FFT length L >= N (a real FFT of length 2L packed as a complex
        one of length L; 5-smooth, so the tail of the signal is zero-padded) and its stages."""
        length = smooth_length(a["u"][2])
        return length, stockham_stages(length)

    def _flops_stockham(self, a):
        b, h, n = a["u"]
        length, _ = self._stockham_dims(a)
        m = 2 * length  # real FFT length
        fft = 2.5 * m * math.log2(m)  # nominal real-FFT count
        return fft * (b * h + h) + 6 * b * h * length + fft * b * h

    def _constants_stockham(self, a):
        import numpy as np

        length, stages = self._stockham_dims(a)
        # tw[s, p]: the twiddle stage s applies to its input element p = j + r * L/R
        # (forward sign; the inverse uses the conjugate). Stage 0 has none.
        tw = np.ones((len(stages), length), dtype=np.complex128)
        p = np.arange(length)
        for s, (r, ns, _) in enumerate(stages):
            rr, j = p // (length // r), p % (length // r)
            tw[s] = np.exp(-2j * np.pi * (j % ns) * rr / (ns * r))
        wm = np.exp(-2j * np.pi * np.arange(length) / (2 * length))  # W_M^f, M = 2L
        f32 = np.float32
        return {"tw_re": tw.real.astype(f32), "tw_im": tw.imag.astype(f32),
                "wm_re": wm.real.astype(f32), "wm_im": wm.imag.astype(f32)}

    def _compute_stockham(self, a, ins):
        """Forward FFTs of u's rows and of k (two chains of stages), the spectral product, the
        inverse. Every stage tensor is [rows, A, R, Ns, H] (its output index q = (a R + k) Ns + b
        as three axes, so the radix axis k is a loop of its own); channels are innermost."""
        from tvm import te, tirx

        bsz, h, n = a["u"]
        length, stages = self._stockham_dims(a)
        u, kf = ins["u"], ins["k"]
        twr, twi, wmr, wmi = ins["tw_re"], ins["tw_im"], ins["wm_re"], ins["wm_im"]
        nz = (n + 1) // 2  # complex samples carrying data: z[p] = x[2p] + i x[2p+1]
        keep = {"schedule_rule": "None"}  # stages read R times: never inline them (tuner)

        def at(x, c, p, hh):
            """Element p (flat FFT index) of a stage tensor pair ``x``."""
            _, _, rp, nsp, _ = (int(d) for d in x[0].shape)
            i = (c, p // (rp * nsp), (p // nsp) % rp, p % nsp, hh)
            return x[0][i], x[1][i]

        def stage(src, s, rows, sign, name, ktail=None, first=None):
            r, ns, na = stages[s]
            lr = length // r
            last = s == len(stages) - 1

            def load(c, p, hh, rr, ia, b):
                if src is not None:  # p = (ia + rr A) Ns + b: direct indices, no div/mod of p
                    _, _, rp, nsp, _ = (int(d) for d in src[0].shape)
                    if rp * nsp == ns:
                        i = (c, ia + rr * na, b // nsp if rp > 1 else 0, b % nsp if nsp > 1 else 0, hh)
                        return src[0][i], src[1][i]
                    return at(src, c, p, hh)
                # First forward stage: read the packed signal ``first`` (u's [B, N/2, H] or k's
                # [N/2, H]). The zero tail is a product mask, not a Select: TVM evaluates both
                # sides of a Select but simplifies each side under its condition (dropping the
                # index clamp), which reads out of bounds.
                pc = tirx.min(p, nz - 1) if (rr + 1) * lr > nz else p
                out = []
                for part in first:
                    v = part[c, pc, hh] if len(part.shape) == 3 else part[pc, hh]
                    out.append(v * (p < nz).astype("float32") if (rr + 1) * lr > nz else v)
                return tuple(out)

            def body(c, ia, k, b, hh):
                j = ia * ns + b
                xs = [load(c, j + rr * lr, hh, rr, ia, b) if src is not None or rr * lr < nz else None for rr in range(r)]
                ore, oim = dft_at(xs, k, sign)
                if last:
                    return ore, oim
                q = (ia * r + k) * ns + b
                tr, ti = twr[s + 1, q], twi[s + 1, q] * (-sign)  # conj for the inverse
                return ore * tr - oim * ti, ore * ti + oim * tr

            return te.compute((rows, na, ktail or r, ns, h), body, name=name, attrs=keep)

        # z[p] = x[2p] + i x[2p+1], transposed to channels-innermost: [B, N/2, H] and [N/2, H]
        def pack(sig, lead):
            def body(*i):
                *rest, p, hh = i
                odd = tirx.min(2 * p + 1, n - 1)
                im = sig[(*rest, hh, odd)]
                return sig[(*rest, hh, 2 * p)], (im * (2 * p + 1 < n).astype("float32") if n % 2 else im)

            return te.compute((*lead, nz, h), body, name="pack_u" if lead else "pack_k", attrs=keep)

        # u's rows and k go through the forward stages as two chains: one chain over B + 1 rows
        # doubles each stage's working set, and at hyena_4k (4 MB per stage) the pair of buffers
        # a stage reads and writes then no longer fits the L3 (benchmarks/RESULTS.md, session 7).
        packed_u, packed_k = pack(u, (bsz,)), pack(kf, ())
        zu = zk = None
        for s in range(len(stages)):
            zu = stage(zu, s, bsz, -1, f"fwd{s}", first=packed_u)
        for s in range(len(stages)):
            zk = stage(zk, s, 1, -1, f"kfwd{s}", first=packed_k)

        r0 = stages[0][0]
        lr0 = length // r0

        def spectral(b, rr, _one, jj, hh):
            f = rr * lr0 + jj
            g = (length - f) % length
            w = (wmr[f], wmi[f])
            w2 = (-wmr[f], wmi[f])  # W_M^(L-f) = -conj(W_M^f)

            def mul(p, q):
                return p[0] * q[0] - p[1] * q[1], p[0] * q[1] + p[1] * q[0]

            def half_spectrum(z, c):  # X[f], X[L-f] of the real signal in row c of z
                za, zb = at(z, c, f, hh), at(z, c, g, hh)
                out = []
                for p, q, ww in ((za, zb, w), (zb, za, w2)):
                    s_ = (p[0] + q[0], p[1] - q[1])  # p + conj q
                    d = (p[0] - q[0], p[1] + q[1])  # p - conj q
                    t = mul(ww, d)
                    out.append((0.5 * (s_[0] + t[1]), 0.5 * (s_[1] - t[0])))  # (s - i t) / 2
                return out

            (u1, u2), (k1, k2) = half_spectrum(zu, b), half_spectrum(zk, 0)
            p1, p2 = mul(u1, k1), mul(u2, k2)
            scale = 0.5 / length  # the inverse's 1/L and the 1/2 of even/odd separation
            e = ((p1[0] + p2[0]) * scale, (p1[1] - p2[1]) * scale)
            o = mul((p1[0] - p2[0], p1[1] + p2[1]), (w[0] * scale, -w[1] * scale))
            return e[0] - o[1], e[1] + o[0]  # E + i O

        # [B, R0, 1, L/R0, H]: the first inverse stage reads it as R0 streams
        x = te.compute((bsz, r0, 1, lr0, h), spectral, name="spectral", attrs=keep)
        ns_last = stages[-1][1]
        ktail = -(-nz // ns_last)  # the last inverse stage makes only p < N/2
        for s in range(len(stages)):
            x = stage(x, s, bsz, +1, f"inv{s}", ktail=ktail if s == len(stages) - 1 else None)
        y = x

        def unpack(b, hh, t):
            yr, yi = at(y, b, t // 2, hh)
            return tirx.Select(t % 2 == 0, yr, yi)

        return te.compute((bsz, h, n), unpack, name="unpack")

    def _schedule_cpu_stockham(self, sch, target, a):
        """Channel chunks: the channels are split into chunks of ``lanes`` (one vector), and one
        parallel loop over the chunks runs every stage of both chains for its chunk, from the
        packs to the unpack, for all B rows: a chunk's stage buffers (B x lanes x L complex) stay
        in the core's L2 between stages, where stage-by-stage passes over all channels streamed
        them through L3 (1.8x faster at hyena_4k, benchmarks/RESULTS.md, session 9). When B rows
        would not fit, the loop is over (rows, chunks) and the filter's chain gets a chunk loop
        of its own before it. Inside a stage the loops are (a, b, k, lanes): the radix loop k
        unrolled (its Select on k folds to one butterfly output), the lanes vectorised.
        Power-of-two strides between the R streams a stage reads or writes would put them all
        in one cache set: strides that are multiples of 4 KiB get one cache line of padding."""
        from .schedules import float_lanes

        bsz, h, n = a["u"]
        length, stages = self._stockham_dims(a)
        cores = int(target.attrs.get("num-cores", 1))
        # One vector of channels per chunk (16 floats with AVX-512, else 8), narrower when it
        # does not divide H or leaves a core without a chunk.
        wide = float_lanes(target)
        lanes = next(w for w in (16, 8, 4, 2, 1) if w <= wide and h % w == 0)
        # All rows of a chunk in one iteration (the filter's chain once per chunk, in the same
        # loop) while their stage buffers fit in L2 (1 MiB each); otherwise one row per iteration.
        rows_inside = bsz == 1 or bsz * wide * length * 8 <= 1 << 20
        while lanes > 1 and (1 if rows_inside else bsz) * h // lanes < cores and h % (lanes // 2) == 0:
            lanes //= 2

        def unalign(name, r, ns):  # buffer [rows, A, r, ns, lanes]: strides of axes 2 and 1
            for part in ("_v0", "_v1"):
                blk, s2 = sch.get_sblock(name + part), ns * lanes
                if s2 % 1024 == 0:
                    sch.storage_align(blk, 0, 2, 1024, 16)
                    s2 += 16
                if r * s2 % 1024 == 0:
                    sch.storage_align(blk, 0, 1, 1024, 16)

        def chunk_first(rows, ho):  # the loop order: (chunk, rows) or (rows, chunk)
            return [ho, *rows] if rows_inside else [*rows, ho]

        def chunk_loop(rows, ho):  # the loop the chain's nests are merged at
            return ho if rows_inside or not rows else sch.fuse(*rows, ho)

        def vectorize(loop):
            if lanes > 1:
                sch.vectorize(loop)

        def stage(name):
            """(rows, A, R, Ns, H) -> (chunks, rows | A, Ns, R unrolled, lanes); the chunk loop."""
            block = sch.get_sblock(f"{name}_v0")
            c, qa, qk, qb, hh = sch.get_loops(block)
            if name != "spectral":
                unalign(name, int(sch.get(qk).extent), int(sch.get(qb).extent))
            ho, hi = sch.split(hh, [None, lanes])
            sch.reorder(*chunk_first([c], ho), qa, qb, qk, hi)
            if name != "spectral":
                sch.unroll(qk)
            vectorize(hi)
            return chunk_loop([c], ho)

        def pack(name):
            """The transpose [.., H, N/2] -> [.., N/2, H], in 8 x lanes tiles."""
            block = sch.get_sblock(f"{name}_v0")
            *lead, p, hh = sch.get_loops(block)
            ho, hi = sch.split(hh, [None, lanes])
            inner = [p]
            if int(sch.get(p).extent) % 8 == 0:
                inner = list(sch.split(p, [None, 8]))
            sch.reorder(*chunk_first(lead, ho), *inner, hi)
            vectorize(hi)
            return chunk_loop(lead, ho)

        # u's chain, from pack to unpack, and the filter's (one row)
        chain = [pack("pack_u")] + [stage(f"fwd{s}") for s in range(len(stages))]
        kchain = [pack("pack_k")] + [stage(f"kfwd{s}") for s in range(len(stages))]
        chain += [stage("spectral")] + [stage(f"inv{s}") for s in range(len(stages))]
        unalign("spectral", 1, length // stages[0][0])
        # unpack: [B, H, N] written along t (8-wide vectors), gathering from the last stage
        block = sch.get_sblock("unpack")
        b, hh, t = sch.get_loops(block)
        ho, hi = sch.split(hh, [None, lanes])
        if n % 8 == 0:
            to, ti = sch.split(t, [None, 8])
            sch.reorder(*chunk_first([b], ho), to, hi, ti)
            sch.vectorize(ti)
        else:
            sch.reorder(*chunk_first([b], ho), hi, t)
        chain.append(chunk_loop([b], ho))
        if rows_inside:  # same extent: one loop for both chains (the filter's first)
            loops = [sch.merge(*chain[: 1 + len(stages)], *kchain, *chain[1 + len(stages):])]
        else:
            loops = [sch.merge(*kchain) if len(kchain) > 1 else kchain[0], sch.merge(*chain)]
        for loop in loops:
            if cores > 1 and int(sch.get(loop).extent) > 1:
                sch.parallel(loop)

    def baseline(self, a, u, k):
        """torch.fft: real FFTs of length 2N, product, inverse (the filter spectrum included)."""
        import torch

        n = u.shape[-1]
        spec = torch.fft.rfft(u, n=2 * n) * torch.fft.rfft(k, n=2 * n)
        return torch.fft.irfft(spec, n=2 * n)[..., :n]

    def reference(self, a, u, k):
        """Direct causal convolution (no FFT): y[t] = sum_{s<=t} k[s] u[t-s]."""
        import torch.nn.functional as F

        b, h, n = u.shape
        return F.conv1d(F.pad(u, (n - 1, 0)), k.flip(-1).unsqueeze(1), groups=h)
