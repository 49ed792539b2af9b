"""Small odd-shaped workloads, one or more per operator, shared by the tests/torch suites."""

from __future__ import annotations

import torch

from opsearch import ops
from opsearch.torch_bridge import library
from tests.conftest import random_inputs

CASES = [
    ("dilated_conv2d", dict(x=[2, 6, 9, 11], weight=[4, 3, 3, 3], bias=[4], padding=[2, 1], dilation=[2, 1], groups=2)),
    ("dilated_conv2d", dict(x=[1, 3, 11, 10], weight=[5, 3, 3, 2], padding=1, dilation=2, stride=[2, 1])),
    ("dilated_conv1d", dict(x=[2, 3, 13], weight=[4, 3, 3], bias=[4], dilation=2)),
    ("dilated_conv1d", dict(x=[1, 4, 11], weight=[3, 4, 3], dilation=3, causal=False)),
    ("shift_conv2d", dict(x=[2, 5, 7, 6], shifts=[5, 2], weight=[4, 5], bias=[4])),
    ("shift_linear", dict(x=[3, 2, 7], sign=[5, 7], shift=[5, 7], bias=[5])),
    ("adder_conv2d", dict(x=[2, 3, 7, 6], weight=[4, 3, 3, 3], padding=1, stride=[2, 1])),
    ("condconv2d", dict(x=[2, 4, 7, 6], experts=[3, 5, 4, 3, 3], routing=[2, 3], bias=[5], padding=1)),
    ("lightweight_conv1d", dict(x=[2, 6, 11], weight=[3, 5], causal=True)),
    ("dynamic_conv1d", dict(x=[2, 6, 11], weight=[2, 3, 4, 11])),
    ("involution2d", dict(x=[1, 4, 7, 8], kernel=[1, 2, 9, 7, 8], kernel_size=3, padding=1)),
    ("fft_conv1d", dict(u=[2, 3, 24], k=[3, 24])),
    ("dct_channel_attention", dict(x=[2, 6, 5, 7], freqs=[3, 2], w1=[2, 6], w2=[6, 2])),
    ("spectral_conv2d", dict(x=[2, 3, 7, 6], weight=[3, 2, 4, 3, 2])),
    ("neighborhood_attention2d", dict(q=[1, 2, 7, 6, 3], k=[1, 2, 7, 6, 3], v=[1, 2, 7, 6, 3], kernel_size=3, dilation=2)),
    ("deformable_conv2d", dict(x=[2, 3, 6, 7], offset=[2, 18, 6, 7], mask=[2, 9, 6, 7], weight=[4, 3, 3, 3], bias=[4], padding=1)),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def inputs(name: str, args: dict, gen, dtype=torch.float64):
    """(workload, tensors in signature order (None when absent), attributes in schema form)."""
    op = ops.get(name)
    wl = op.workload(**args)
    t = random_inputs(op, wl, gen, dtype)
    tensors = [t.get(p.name) for p in op.tensors]
    attrs = library.attr_args(name, {a.name: wl.args[a.name] for a in op.attrs})
    return wl, tensors, attrs
