"""A "Pay Less Attention" encoder block: GLU input projection, DynamicConv1d (kernels predicted
per time step), output projection, residual and LayerNorm.

    python examples/dynamic_conv_block.py
    opsearch model bench examples/dynamic_conv_block.py:build
"""

from __future__ import annotations

import torch
from torch import nn

from _common import compare
from opsearch.nn import DynamicConv1d


class DynamicConvBlock(nn.Module):
    def __init__(self, dim: int = 128, heads: int = 8, kernel_size: int = 7):
        super().__init__()
        self.inp = nn.Linear(dim, 2 * dim)
        self.conv = DynamicConv1d(dim, kernel_size, heads)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):  # x: [N, T, C]
        h = nn.functional.glu(self.inp(x), dim=-1)
        h = self.conv(h.transpose(1, 2).contiguous()).transpose(1, 2)
        return self.norm(x + self.out(h))


def build(batch: int = 4):
    """Two blocks (128 channels, 8 heads, kernel 7) and a batch of 256-step sequences."""
    torch.manual_seed(0)
    return nn.Sequential(DynamicConvBlock(), DynamicConvBlock()).eval(), (torch.randn(batch, 256, 128),)


def main():
    model, (x,) = build()
    compare(model, x)


if __name__ == "__main__":
    main()
