"""A Hyena-style operator of order 2: input projection to (v, gate), a long causal FFTConv1d over
the whole sequence (learnable filter with exponential decay), gating, output projection.

    python examples/hyena_fftconv_block.py
    opsearch model bench examples/hyena_fftconv_block.py:build
"""

from __future__ import annotations

import torch
from torch import nn

from _common import compare
from opsearch.nn import FFTConv1d


class HyenaBlock(nn.Module):
    def __init__(self, dim: int = 64, seq_len: int = 1024):
        super().__init__()
        self.inp = nn.Linear(dim, 2 * dim)
        self.long_conv = FFTConv1d(dim, seq_len)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):  # x: [B, L, D]
        v, gate = self.inp(x).chunk(2, dim=-1)
        y = self.long_conv(v.transpose(1, 2).contiguous()).transpose(1, 2)
        return x + self.out(y * torch.sigmoid(gate))


def build(batch: int = 2):
    """One block (64 channels, sequence length 1024) and a batch of sequences."""
    torch.manual_seed(0)
    return HyenaBlock().eval(), (torch.randn(batch, 1024, 64),)


def main():
    model, (x,) = build()
    compare(model, x)


if __name__ == "__main__":
    main()
