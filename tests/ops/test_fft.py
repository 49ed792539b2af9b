"""fft_conv1d against the direct causal convolution for N from 16 to 16384, including lengths
that are not powers of two and lengths that need padding (primes)."""

from __future__ import annotations

import math

import pytest
import torch

import opsearch.functional as F
from opsearch import ops
from opsearch.ops.fft_stages import plan, radices, small_dft, smooth_length, stockham_stages
from tests.conftest import relative_error

LENGTHS = [16, 17, 100, 1000, 1009, 1024, 3000, 4096, 16384]


@pytest.mark.parametrize("n", LENGTHS)
def test_fft_conv1d_matches_direct_convolution(n, gen):
    b, h = (2, 3) if n <= 4096 else (1, 2)
    u = torch.randn(b, h, n, generator=gen, dtype=torch.float64)
    k = torch.randn(h, n, generator=gen, dtype=torch.float64) / n**0.5
    ref = ops.get("fft_conv1d").reference(None, u, k)
    y = F.fft_conv1d(u.float(), k.float())
    assert relative_error(y, ref) <= 1e-4


def test_plan_pads_only_lengths_without_a_balanced_factorisation():
    assert plan(4096) == (4096, 64, 64)
    assert plan(1000) == (1000, 25, 40)
    npad, n1, n2 = plan(1009)  # prime: padded
    assert npad > 1009 and n1 * n2 == npad and n1 * 2 >= npad**0.5
    assert plan(17)[0] > 17


def test_explicit_factor(gen):
    u = torch.randn(1, 2, 256, generator=gen)
    k = torch.randn(2, 256, generator=gen)
    ref = ops.get("fft_conv1d").reference(None, u.double(), k.double())
    for n1 in (4, 16, 64):
        assert relative_error(F.fft_conv1d(u, k, n1=n1), ref) <= 1e-4


# The schedule runs chunks of channels one vector wide: channel counts that are multiples of 8
# or 16 take full vectors (and, at these lengths, the padded strides), 4 and 2 narrower ones,
# odd counts stay scalar; (3, 8, 8192) is too large for all rows of a chunk in one iteration.
@pytest.mark.parametrize("b,h,n", [(2, 8, 1000), (1, 16, 4096), (1, 32, 2048), (3, 8, 8192), (3, 4, 777), (2, 6, 50), (1, 1, 1), (2, 5, 2)])
def test_stockham_shapes(b, h, n, gen):
    u = torch.randn(b, h, n, generator=gen, dtype=torch.float64)
    k = torch.randn(h, n, generator=gen, dtype=torch.float64) / n**0.5
    ref = ops.get("fft_conv1d").reference(None, u, k)
    assert relative_error(F.fft_conv1d(u.float(), k.float()), ref) <= 1e-4


def test_stockham_plan():
    assert smooth_length(1009) == 1024 and smooth_length(1000) == 1000 and smooth_length(17) == 18
    assert radices(4096) == [8, 8, 8, 8] and radices(3000) == [8, 3, 5, 5, 5]
    # every stage's sizes multiply back to L
    for length in (2, 18, 1000, 16384):
        assert math.prod(r for r, _, _ in stockham_stages(length)) == length
        assert all(r * ns * na == length for r, ns, na in stockham_stages(length))


@pytest.mark.parametrize("r", [2, 3, 4, 5, 8, 16])
def test_small_dft_matches_numpy(r):
    import numpy as np

    x = np.random.default_rng(r).standard_normal(r) + 1j * np.random.default_rng(r + 1).standard_normal(r)
    for sign, ref in ((-1, np.fft.fft(x)), (1, np.fft.ifft(x) * r)):
        out = small_dft([(v.real, v.imag) for v in x], sign)
        assert np.allclose([re + 1j * im for re, im in out], ref, atol=1e-12)


def test_explicit_n1_keeps_the_four_step_path():
    from opsearch.ops import tir

    wl = ops.get("fft_conv1d").workload(u=[1, 2, 64], k=[2, 64], n1=8)
    names = tir.prim_func(wl).script()
    assert "idft1" in names and "fwd0" not in names
    assert "fwd0" in tir.prim_func(ops.get("fft_conv1d").workload(u=[1, 2, 64], k=[2, 64])).script()
