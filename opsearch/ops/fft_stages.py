"""FFT building blocks for the fft family's TE declarations: the length plans (the balanced
N1 x N2 factor pair of the four-step form; 5-smooth lengths and stage radices of the Stockham
form) and one butterfly's complex arithmetic as TIR expressions over (re, im) pairs, with the
twiddle constants folded (``small_dft`` for a fixed output index, ``dft_at`` for a loop
variable). Imports TVM only inside :func:`select`.
"""

from __future__ import annotations

import math


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


# ---------------------------------------------------------------------------- Stockham path
def smooth_length(n: int) -> int:
    """The smallest even length >= ``n`` whose only prime factors are 2, 3 and 5."""
    m = max(n + (n & 1), 2)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


def radices(length: int) -> list[int]:
    """Stage radices of a complex FFT of ``length`` (5-smooth): 8s first (each stage is one pass
    over memory; inside it the radix-8 butterfly is a 4 x 2 FFT in registers), then 4, 2, 3, 5.
    (Radix 16 makes LLVM give up sharing loads between the 16 outputs: slower.)"""
    out, rest = [], length
    for p in (8, 4, 2, 3, 5):
        while rest % p == 0:
            out.append(p)
            rest //= p
    if rest != 1:
        raise ValueError(f"length {length} is not 5-smooth")
    return out


def stockham_stages(length: int) -> list[tuple[int, int, int]]:
    """(R, Ns, A) per stage: radix, size of the transforms already done, L / (Ns R)."""
    stages, ns = [], 1
    for r in radices(length):
        stages.append((r, ns, length // (ns * r)))
        ns *= r
    return stages


def cmul(x, c: complex):
    """(re, im) expressions times a Python complex constant, skipping zero and unit factors."""
    re, im = x
    cr, ci = round(c.real, 15), round(c.imag, 15)
    if ci == 0:
        if cr == 1:
            return re, im
        if cr == -1:
            return -re, -im
        return re * cr, im * cr
    if cr == 0:
        if ci == 1:
            return -im, re
        if ci == -1:
            return im, -re
        return -im * ci, re * ci
    return re * cr - im * ci, re * ci + im * cr


def csum(terms):
    """Sum of (re, im) pairs; None is zero (and all zeros give None)."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    re, im = terms[0]
    for r, i in terms[1:]:
        re, im = re + r, im + i
    return re, im


def twiddle(x, num: int, den: int, sign: int):
    """x * exp(sign * 2 pi i num / den) with the constant folded; None stays None."""
    if x is None:
        return None
    ang = 2 * math.pi * (num % den) / den
    return cmul(x, complex(math.cos(ang), sign * math.sin(ang)))


def small_dft(xs: list, sign: int) -> list:
    """DFT of a short list of (re, im) expressions (None = zero) as an expression DAG:
    X[k] = sum_n x[n] exp(sign 2 pi i n k / R). Composite R splits as R1 * R2 (R1 = 2 or 4,
    decimation in time) so the outputs share their sub-butterflies; the compiler's CSE turns
    the shared subexpressions into one computation once the caller unrolls over k."""
    r = len(xs)
    if r in (1, 2, 3, 5):
        return [csum([twiddle(x, n * k, r, sign) for n, x in enumerate(xs)]) for k in range(r)]
    r1 = 4 if r % 4 == 0 and r > 4 else 2
    r2 = r // r1
    # n = r2 * n1 + n2, k = k1 + r1 * k2
    inner = [small_dft([xs[r2 * n1 + n2] for n1 in range(r1)], sign) for n2 in range(r2)]  # [n2][k1]
    out = [None] * r
    for k1 in range(r1):
        col = small_dft([twiddle(inner[n2][k1], n2 * k1, r, sign) for n2 in range(r2)], sign)
        for k2 in range(r2):
            out[k1 + r1 * k2] = col[k2]
    return out


def select(k, values):
    """values[k] for a loop variable k, as a Select over constants (one constant if all agree):
    once the caller unrolls k, every Select folds to a constant and multiplications by 0 and
    1 fold away."""
    from tvm import tirx

    values = [round(v, 15) for v in values]
    out = tirx.const(values[-1], "float32")
    if all(v == values[0] for v in values):
        return out
    for i in range(len(values) - 2, -1, -1):
        out = tirx.Select(k == i, tirx.const(values[i], "float32"), out)
    return out


def dft_at(xs: list, k, sign: int):
    """Output k (an index expression) of the DFT of (re, im) expressions ``xs`` (None = zero),
    with the same R1 x R2 split as :func:`small_dft`. Each input appears once, whatever R (a
    Select over whole outputs would repeat it R times): the tuner's analyses stay fast, and
    with k unrolled the constants fold and the compiler shares the sub-butterflies."""
    r = len(xs)

    def twiddled(x, kk, m, den):  # x * exp(sign 2 pi i m kk / den) for kk in [0, den // m)
        if x is None:
            return None
        n_k = den // m if den % m == 0 else den
        c = select(kk, [math.cos(2 * math.pi * m * i / den) for i in range(n_k)])
        s = select(kk, [sign * math.sin(2 * math.pi * m * i / den) for i in range(n_k)])
        return x[0] * c - x[1] * s, x[0] * s + x[1] * c

    if r in (1, 2, 3, 5):
        return csum([x if n == 0 else twiddled(x, k, n, r) for n, x in enumerate(xs)])
    r1 = 4 if r % 4 == 0 and r > 4 else 2
    r2 = r // r1
    k1, k2 = k % r1, k // r1
    inner = [dft_at([xs[r2 * n1 + n2] for n1 in range(r1)], k1, sign) for n2 in range(r2)]
    mids = []
    for n2, v in enumerate(inner):
        if v is None or n2 == 0:
            mids.append(v)
            continue
        c = select(k1, [math.cos(2 * math.pi * n2 * i / r) for i in range(r1)])
        s = select(k1, [sign * math.sin(2 * math.pi * n2 * i / r) for i in range(r1)])
        mids.append((v[0] * c - v[1] * s, v[0] * s + v[1] * c))
    return dft_at(mids, k2, sign)
