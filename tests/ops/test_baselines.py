"""Every pure-PyTorch baseline (``opsearch.bench.baselines``) matches its operator's independent
reference on fresh random float32 inputs, at several shapes including odd sizes."""

from __future__ import annotations

import pytest
import torch

from opsearch import ops
from opsearch.bench import baselines
from opsearch.errors import UnknownOperatorError
from tests.conftest import random_inputs, relative_error

CASES = [
    ("dilated_conv2d", dict(x=[2, 5, 13, 11], weight=[7, 5, 3, 3], padding=[2, 1], dilation=[2, 1], stride=[1, 2])),
    ("dilated_conv2d", dict(x=[1, 6, 9, 10], weight=[4, 3, 3, 2], bias=[4], groups=2, padding=3, dilation=3)),
    ("dilated_conv1d", dict(x=[3, 5, 37], weight=[7, 5, 3], dilation=4)),
    ("dilated_conv1d", dict(x=[2, 4, 17], weight=[3, 4, 5], bias=[3], dilation=2, causal=False)),
    ("condconv2d", dict(x=[3, 6, 9, 7], experts=[4, 5, 6, 3, 3], routing=[3, 4], padding=1, stride=2)),
    ("condconv2d", dict(x=[2, 6, 7, 7], experts=[3, 6, 1, 3, 3], routing=[2, 3], bias=[6], groups=6, padding=1,
                        dilation=2)),
    ("lightweight_conv1d", dict(x=[3, 6, 13], weight=[3, 5])),
    ("lightweight_conv1d", dict(x=[2, 8, 9], weight=[2, 4])),
    ("lightweight_conv1d", dict(x=[1, 5, 11], weight=[5, 7], causal=True)),
    ("dynamic_conv1d", dict(x=[3, 6, 13], weight=[3, 3, 5, 13])),
    ("dynamic_conv1d", dict(x=[2, 8, 9], weight=[2, 4, 4, 9], causal=True)),
    ("dynamic_conv1d", dict(x=[1, 3, 5], weight=[1, 1, 1, 5])),
    ("involution2d", dict(x=[2, 6, 11, 9], kernel=[2, 3, 9, 11, 9], kernel_size=3, padding=1)),
    ("involution2d", dict(x=[1, 4, 13, 13], kernel=[1, 2, 25, 7, 7], kernel_size=5, stride=2, padding=2)),
    ("involution2d", dict(x=[1, 4, 12, 10], kernel=[1, 1, 9, 12, 10], kernel_size=3, dilation=2, padding=2)),
    ("fft_conv1d", dict(u=[2, 3, 37], k=[3, 37])),
    ("fft_conv1d", dict(u=[1, 2, 64], k=[2, 64])),
    ("fft_conv1d", dict(u=[1, 1, 101], k=[1, 101])),
    ("shift_conv2d", dict(x=[2, 5, 9, 7], shifts=[5, 2], weight=[3, 5])),
    ("shift_conv2d", dict(x=[1, 3, 2, 3], shifts=[3, 2], weight=[4, 3], bias=[4])),  # shifts past the border
    ("shift_linear", dict(x=[3, 7, 13], sign=[5, 13], shift=[5, 13])),
    ("shift_linear", dict(x=[11], sign=[9, 11], shift=[9, 11], bias=[9])),
    ("shift_linear", dict(x=[2, 11], sign=[9, 11], shift=[9, 11], dtype="int32")),
    ("shift_linear", dict(x=[5, 3, 17], sign=[6, 17], shift=[6, 17], dtype="int32")),
    ("adder_conv2d", dict(x=[2, 3, 9, 7], weight=[5, 3, 3, 3], padding=1, stride=2)),
    ("adder_conv2d", dict(x=[1, 4, 6, 5], weight=[2, 4, 2, 3])),
    ("dct_channel_attention", dict(x=[2, 12, 13, 11], freqs=[4, 2], w1=[3, 12], w2=[12, 3])),
    ("dct_channel_attention", dict(x=[1, 5, 7, 6], freqs=[5, 2], w1=[4, 5], w2=[5, 4])),
    ("spectral_conv2d", dict(x=[2, 3, 13, 10], weight=[3, 4, 6, 4, 2])),
    ("spectral_conv2d", dict(x=[1, 2, 7, 9], weight=[2, 2, 2, 5, 2])),
    ("neighborhood_attention2d", dict(q=[2, 3, 9, 11, 5], k=[2, 3, 9, 11, 5], v=[2, 3, 9, 11, 5], kernel_size=3, dilation=2)),
    ("neighborhood_attention2d", dict(q=[1, 2, 13, 7, 8], k=[1, 2, 13, 7, 8], v=[1, 2, 13, 7, 8], kernel_size=5)),
    ("deformable_conv2d", dict(x=[2, 4, 9, 11], offset=[2, 18, 9, 11], mask=[2, 9, 9, 11], weight=[5, 4, 3, 3], padding=1)),
    ("deformable_conv2d", dict(x=[1, 6, 10, 7], offset=[1, 36, 5, 3], mask=[1, 18, 5, 3], weight=[6, 2, 2, 3], bias=[6],
                               stride=2, padding=[1, 0], dilation=[2, 1], groups=3)),
]


def test_every_operator_has_a_registered_baseline():
    assert baselines.registered() == ops.names()
    for name in ops.names():
        assert baselines.get(name).method and baselines.get(name).op == name
    assert {name for name, _ in CASES} == set(ops.names())


def test_unknown_operator():
    with pytest.raises(UnknownOperatorError, match="unknown operator 'nope'"):
        baselines.get("nope")


@pytest.mark.parametrize("name,args", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_baseline_matches_reference(name, args, gen):
    op = ops.get(name)
    wl = op.workload(**args)
    t = random_inputs(op, wl, gen, torch.float32)
    b = baselines.get(name)
    with torch.no_grad():
        ref = op.reference(wl.args, **{n: v.double() if v.is_floating_point() else v for n, v in t.items()})
        y = b(wl.args, **t)
        # The benchmark times run() on prepared tensors: that path must give the same output.
        y2 = b.run(wl.args, **b.prepared(wl.args, **t))
    assert y.shape == ref.shape
    assert y.dtype == (torch.int32 if wl["dtype"] == "int32" else torch.float32)
    assert torch.equal(y, y2)
    if wl["dtype"] == "int32":
        assert torch.equal(y, ref), "the int32 path must be exact"
    else:
        err = relative_error(y, ref)
        assert err <= op.tolerance, (name, err)


def test_baselines_do_not_modify_inputs(gen):
    name, args = "dynamic_conv1d", dict(x=[2, 4, 7], weight=[2, 2, 3, 7])
    op = ops.get(name)
    wl = op.workload(**args)
    t = random_inputs(op, wl, gen, torch.float32)
    before = {n: v.clone() for n, v in t.items()}
    baselines.get(name)(wl.args, **t)
    assert all(torch.equal(t[n], before[n]) for n in t)
