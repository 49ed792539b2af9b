"""Family "fft": causal long convolution through a four-step (Monarch) FFT of length 2N.

The FFT is written as DFT-matrix products. With N' = N1 * N2 (N' >= N, see below), the FFT
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

from .registry import register
from .spec import Attr, OpSpec, TensorParam


def balanced_factor(n: int) -> int:
    """The divisor of ``n`` closest to sqrt(n) within [sqrt(n)/2, 2 sqrt(n)], or 0."""
    r = math.isqrt(n)
    for d in range(r, 0, -1):
        if n % d == 0:
            return d if 2 * d >= math.sqrt(n) else 0
    return 0


def plan(n: int, n1: int = 0) -> tuple[int, int, int]:
    """(N', N1, N2) for sequence length ``n``."""
    if n1:
        return n, n1, n // n1
    padded = n
    while not balanced_factor(padded):
        padded += 1
    f = balanced_factor(padded)
    return padded, f, padded // f


@register
class FFTConv1d(OpSpec):
    name = "fft_conv1d"
    family = "fft"
    doc = "Causal long convolution y = k * u (per channel) via a DFT-matrix (four-step) FFT of length 2N."
    tensors = (TensorParam("u", ("B", "H", "N")), TensorParam("k", ("H", "N")))
    attrs = (Attr("n1", "int", 0, minimum=0, doc="first FFT factor (0: balanced, about sqrt(N))"),)
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

    def _flops(self, a):
        b, h, n = a["u"]
        _, n1, _, m1, m2 = self._dims(a)
        m = m1 * m2

        def forward(rows):  # real DFT over n1, twiddle, complex DFT over n2
            return rows * (4 * m2 * m1 * n1 + 6 * m + 8 * m * m2)

        inverse = b * h * (8 * m * m2 + 6 * m + 4 * n * m1)
        return forward(b * h) + forward(h) + 6 * b * h * m + inverse

    def constants(self, a):
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

    def compute(self, a, ins):
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

    def schedule_cpu(self, sch, target, a):
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

    def schedule_cuda(self, sch, target, a):
        from .schedules import default_cuda

        default_cuda(sch, target, keep=self.keep_stages)

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
