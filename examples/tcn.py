"""A temporal convolutional network of dilated causal conv1d layers (dilations 1, 2, 4, 8, 16).

Written in plain PyTorch (ConstantPad1d + Conv1d per layer), then handed to ``opsearch.optimize``,
which swaps each causal layer with dilation > 1 for ``opsearch.nn.DilatedConv1d`` sharing its
weights (the dilation-1 block stays PyTorch).

    python examples/tcn.py
    opsearch model bench examples/tcn.py:build --tune 32   # eager vs opsearch vs torch.compile, per layer
"""

from __future__ import annotations

import torch
from torch import nn

import opsearch
from _common import compare


class Block(nn.Module):
    def __init__(self, channels: int, dilation: int, k: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConstantPad1d(((k - 1) * dilation, 0), 0.0), nn.Conv1d(channels, channels, k, dilation=dilation), nn.ReLU(),
            nn.ConstantPad1d(((k - 1) * dilation, 0), 0.0), nn.Conv1d(channels, channels, k, dilation=dilation), nn.ReLU(),
        )

    def forward(self, x):
        return torch.relu(x + self.net(x))


def build(batch: int = 4):
    """The TCN (32 channels, dilations 1-16) in plain PyTorch and an input of 1024 steps."""
    torch.manual_seed(0)
    model = nn.Sequential(*[Block(32, d) for d in (1, 2, 4, 8, 16)]).eval()
    return model, (torch.randn(batch, 32, 1024),)


def main():
    model, (x,) = build()
    model, report = opsearch.optimize(model, (x,))
    print(report)
    compare(model, x)


if __name__ == "__main__":
    main()
