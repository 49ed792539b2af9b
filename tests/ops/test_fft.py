"""fft_conv1d against the direct causal convolution for N from 16 to 16384, including lengths
that are not powers of two and lengths that need padding (primes)."""

from __future__ import annotations

import pytest
import torch

import opsearch.functional as F
from opsearch import ops
from opsearch.ops.fft import plan
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
