"""A RedNet bottleneck: 1x1 conv, BN, ReLU, Involution2d (7x7, 16 channels per group, with its
kernel generator), BN, ReLU, 1x1 conv, residual.

    python examples/involution_block.py
    opsearch model bench examples/involution_block.py:build
"""

from __future__ import annotations

import torch
from torch import nn

from _common import compare
from opsearch.nn import Involution2d


class RedNetBottleneck(nn.Module):
    def __init__(self, channels: int = 256, mid: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            Involution2d(mid, kernel_size=7, group_channels=16), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return torch.relu(x + self.body(x))


def build(batch: int = 1):
    """One bottleneck (256 channels, 28x28) and a batch of feature maps."""
    torch.manual_seed(0)
    return RedNetBottleneck().eval(), (torch.randn(batch, 256, 28, 28),)


def main():
    model, (x,) = build()
    compare(model, x)


if __name__ == "__main__":
    main()
