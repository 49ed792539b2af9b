"""Every operator's default-schedule kernel, through ``opsearch.functional``, against its
independent float64 PyTorch reference on fresh random inputs and several shapes."""

from __future__ import annotations

import pytest
import torch

import opsearch.functional as F
from opsearch import ops
from tests.conftest import random_inputs, relative_error

# (operator, workload args): odd sizes, strides, padding, dilation, groups, causal/non-causal.
CASES = [
    ("dilated_conv2d", dict(x=[1, 8, 17, 19], weight=[8, 8, 3, 3], padding=2, dilation=2)),
    ("dilated_conv2d", dict(x=[2, 6, 15, 13], weight=[9, 2, 3, 3], bias=[9], stride=2, padding=[3, 1], dilation=[3, 1], groups=3)),
    ("dilated_conv2d", dict(x=[1, 5, 23, 11], weight=[7, 5, 3, 5], padding=[1, 4], dilation=[1, 2], stride=[1, 2])),
    ("dilated_conv2d", dict(x=[1, 16, 32, 32], weight=[16, 16, 3, 3], bias=[16], padding=8, dilation=8)),
    # NCHW tiles that drop the taps reading only padding: padding not a multiple of the
    # dilation, groups, an odd height; a row stride with every off-centre column tap in the
    # padding of a 16-wide map; no padding at all
    ("dilated_conv2d", dict(x=[1, 6, 15, 16], weight=[8, 3, 3, 5], groups=2, padding=[5, 4], dilation=[5, 2])),
    ("dilated_conv2d", dict(x=[1, 8, 19, 16], weight=[8, 8, 3, 3], bias=[8], stride=[2, 1], padding=[3, 16], dilation=[3, 16])),
    ("dilated_conv2d", dict(x=[2, 8, 9, 32], weight=[4, 8, 2, 3])),
    # channel-blocked (NCHW16c) form: channels in 16s, output width not a multiple of 16
    ("dilated_conv2d", dict(x=[2, 16, 11, 13], weight=[32, 16, 3, 3], bias=[32], stride=[1, 2], padding=[2, 1], dilation=[2, 1])),
    ("dilated_conv2d", dict(x=[1, 32, 9, 19], weight=[16, 32, 3, 5], padding=[3, 2], dilation=[3, 1])),
    ("dilated_conv1d", dict(x=[2, 5, 37], weight=[7, 5, 3], dilation=4)),
    ("dilated_conv1d", dict(x=[1, 3, 101], weight=[4, 3, 5], bias=[4], dilation=3, causal=False)),
    ("dilated_conv1d", dict(x=[3, 8, 64], weight=[8, 8, 2], bias=[8], dilation=16)),
    ("shift_conv2d", dict(x=[1, 10, 13, 17], shifts=[10, 2], weight=[6, 10])),
    ("shift_conv2d", dict(x=[2, 5, 9, 7], shifts=[5, 2], weight=[11, 5], bias=[11])),
    # register tiles: 4 output channels x 4 vectors (with the bias in the write-back), 2 x 1
    ("shift_conv2d", dict(x=[2, 8, 6, 64], shifts=[8, 2], weight=[12, 8], bias=[12])),
    ("shift_conv2d", dict(x=[1, 6, 5, 48], shifts=[6, 2], weight=[6, 6])),
    ("shift_linear", dict(x=[7, 33], sign=[13, 33], shift=[13, 33])),
    ("shift_linear", dict(x=[2, 5, 19], sign=[9, 19], shift=[9, 19], bias=[9])),
    ("adder_conv2d", dict(x=[2, 3, 11, 13], weight=[5, 3, 3, 3], padding=1)),
    ("adder_conv2d", dict(x=[1, 4, 16, 15], weight=[6, 4, 3, 2], stride=[2, 1], padding=[0, 1])),
    ("condconv2d", dict(x=[3, 6, 11, 12], experts=[4, 5, 6, 3, 3], routing=[3, 4], padding=1)),
    ("condconv2d", dict(x=[2, 8, 13, 9], experts=[3, 8, 2, 3, 3], routing=[2, 3], bias=[8], stride=2, padding=2, dilation=2, groups=4)),
    # channel-blocked form: 16-channel multiples, output widths 7 and 13
    ("condconv2d", dict(x=[3, 16, 9, 13], experts=[5, 32, 16, 3, 3], routing=[3, 5], bias=[32], padding=1)),
    ("condconv2d", dict(x=[2, 32, 11, 14], experts=[3, 16, 32, 3, 3], routing=[2, 3], stride=2, padding=[2, 1], dilation=[2, 1])),
    # grouped / depthwise form in register tiles: rows of 4 and 1, a 40-wide row in 8-lane
    # vectors, a 37-wide (prime) one in 1-wide tiles, no padding
    ("condconv2d", dict(x=[2, 12, 8, 40], experts=[3, 12, 1, 3, 3], routing=[2, 3], bias=[12], padding=1, groups=12)),
    ("condconv2d", dict(x=[1, 6, 9, 39], experts=[2, 6, 3, 3, 3], routing=[1, 2], groups=2)),
    ("lightweight_conv1d", dict(x=[2, 12, 23], weight=[4, 5])),
    ("lightweight_conv1d", dict(x=[1, 9, 31], weight=[3, 6], causal=True)),
    ("lightweight_conv1d", dict(x=[3, 16, 17], weight=[16, 7], causal=False)),
    ("dynamic_conv1d", dict(x=[2, 12, 23], weight=[2, 4, 5, 23])),
    ("dynamic_conv1d", dict(x=[3, 6, 19], weight=[3, 2, 4, 19], causal=True)),
    # register tiles with vectors along time: 16 lanes x 1 and x 2, 4 and 2 channels per tile
    ("lightweight_conv1d", dict(x=[2, 8, 48], weight=[2, 5])),
    ("dynamic_conv1d", dict(x=[1, 8, 64], weight=[1, 4, 3, 64], causal=True)),
    ("involution2d", dict(x=[1, 8, 13, 11], kernel=[1, 2, 9, 13, 11], kernel_size=3, padding=1)),
    ("involution2d", dict(x=[2, 6, 15, 14], kernel=[2, 3, 25, 7, 5], kernel_size=5, stride=2, padding=[1, 2], dilation=[1, 2])),
    # register tiles of 4 channels x 4 rows x 8 lanes; 3 channels per group and a prime width
    # (17) leave 1-wide tiles; stride 3 reads the padded input split into 3 phases, no padding none
    ("involution2d", dict(x=[1, 16, 12, 16], kernel=[1, 1, 9, 12, 16], kernel_size=3, padding=1)),
    ("involution2d", dict(x=[1, 6, 19, 17], kernel=[1, 2, 9, 19, 17], kernel_size=3, padding=1)),
    ("involution2d", dict(x=[1, 4, 20, 20], kernel=[1, 1, 9, 8, 8], kernel_size=3, stride=3, padding=2)),
    ("involution2d", dict(x=[2, 8, 11, 12], kernel=[2, 2, 9, 5, 5], kernel_size=3, stride=2)),
    ("fft_conv1d", dict(u=[2, 3, 64], k=[3, 64])),
    ("fft_conv1d", dict(u=[1, 2, 97], k=[2, 97])),
    ("dct_channel_attention", dict(x=[2, 12, 13, 11], freqs=[4, 2], w1=[3, 12], w2=[12, 3])),
    ("dct_channel_attention", dict(x=[1, 6, 7, 9], freqs=[1, 2], w1=[5, 6], w2=[6, 5])),
    # the per-sample schedule: 4-lane pooling (H*W = 196), hidden widths in 4 lanes (12), in
    # none (7, 2), a gate over 20 and 48 channels
    ("dct_channel_attention", dict(x=[3, 32, 14, 14], freqs=[16, 2], w1=[2, 32], w2=[32, 2])),
    ("dct_channel_attention", dict(x=[2, 20, 6, 8], freqs=[5, 2], w1=[12, 20], w2=[20, 12])),
    ("dct_channel_attention", dict(x=[2, 48, 4, 4], freqs=[3, 2], w1=[7, 48], w2=[48, 7])),
    # odd maps, every row and column mode kept (the Nyquist column of an even width), one row pair
    ("spectral_conv2d", dict(x=[2, 3, 9, 11], weight=[3, 4, 4, 3, 2])),
    ("spectral_conv2d", dict(x=[1, 2, 8, 8], weight=[2, 3, 8, 5, 2])),
    ("spectral_conv2d", dict(x=[2, 5, 7, 6], weight=[5, 2, 2, 4, 2])),
    # windows shifted at every border, lattices of unequal length (9 rows at dilation 2), k = 1
    ("neighborhood_attention2d", dict(q=[2, 3, 9, 11, 5], k=[2, 3, 9, 11, 5], v=[2, 3, 9, 11, 5], kernel_size=3, dilation=2)),
    ("neighborhood_attention2d", dict(q=[1, 2, 13, 7, 8], k=[1, 2, 13, 7, 8], v=[1, 2, 13, 7, 8], kernel_size=5)),
    ("neighborhood_attention2d", dict(q=[1, 1, 10, 12, 16], k=[1, 1, 10, 12, 16], v=[1, 1, 10, 12, 16], kernel_size=3, dilation=3)),
    ("neighborhood_attention2d", dict(q=[1, 2, 5, 4, 3], k=[1, 2, 5, 4, 3], v=[1, 2, 5, 4, 3], kernel_size=1, dilation=2)),
    # register tiles (rows of 11 and 9 / 12 lanes), two offset groups with conv groups, stride and
    # dilation; a 3-wide row (the generic default); samples landing past every border
    ("deformable_conv2d", dict(x=[2, 4, 9, 11], offset=[2, 18, 9, 11], mask=[2, 9, 9, 11], weight=[5, 4, 3, 3], padding=1)),
    ("deformable_conv2d", dict(x=[1, 6, 10, 7], offset=[1, 24, 5, 3], mask=[1, 12, 5, 3], weight=[4, 3, 2, 3], bias=[4],
                               stride=2, padding=[1, 0], dilation=[2, 1], groups=2)),
    ("deformable_conv2d", dict(x=[2, 8, 13, 12], offset=[2, 36, 11, 12], mask=[2, 18, 11, 12], weight=[16, 8, 3, 3],
                               bias=[16], padding=[0, 1])),
    ("deformable_conv2d", dict(x=[1, 3, 8, 9], offset=[1, 54, 8, 9], mask=[1, 27, 8, 9], weight=[2, 3, 3, 3], padding=1)),
]


def _call(name, a, t):
    fn = getattr(F, name)
    attrs = {k: v for k, v in a.items() if k != "dtype" and k not in t and a[k] is not None and not any(p.name == k for p in ops.get(name).tensors)}
    return fn(**{k: v for k, v in t.items()}, **attrs)


@pytest.mark.parametrize("name,args", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_reference(name, args, gen):
    op = ops.get(name)
    wl = op.workload(**args)
    t64 = random_inputs(op, wl, gen)
    ref = op.reference(wl.args, **t64)
    t32 = {k: (v.float() if v.is_floating_point() else v) for k, v in t64.items()}
    y = _call(name, wl.args, t32)
    assert y.shape == ref.shape == op.output_shape(wl.args)
    assert y.dtype == torch.float32
    assert relative_error(y, ref) <= op.tolerance


@pytest.mark.parametrize("name,packed_example,nchw_example", [
    ("dilated_conv2d", "inception_d2x1", "context_d4"),
    ("condconv2d", "effnet_3x3_e8", "mbv2_dw_e8"),
])
def test_blocked_layout_choice(name, packed_example, nchw_example):
    """The channel-blocked form is chosen exactly where the NCHW form cannot fill its vectors,
    and the covered cases above exercise both forms."""
    from opsearch.ops import tir

    op = ops.get(name)
    packed = [op.packed(op.workload(**args).args) for n, args in CASES if n == name]
    assert packed.count(True) == 2 and packed.count(False) >= 2
    assert op.packed(op.example(packed_example).args) and not op.packed(op.example(nchw_example).args)
    script = tir.ir_module(op.example(packed_example)).script()
    assert "pack_pad" in script and "unpack" in script
    assert "pack_pad" not in tir.ir_module(op.example(nchw_example)).script()


def test_every_operator_is_covered():
    assert {c[0] for c in CASES} == set(ops.names())


@pytest.mark.parametrize("args", [dict(x=[5, 23], sign=[7, 23], shift=[7, 23]), dict(x=[2, 3, 64], sign=[17, 64], shift=[17, 64])])
def test_shift_linear_int32_is_exact(args, gen):
    op = ops.get("shift_linear")
    wl = op.workload(**args, dtype="int32")
    t = random_inputs(op, wl, gen)
    y = F.shift_linear(t["x"], t["sign"], t["shift"])
    assert y.dtype == torch.int32
    assert torch.equal(y, op.reference(wl.args, **t))


def test_shift_linear_int32_uses_only_shifts_and_adds():
    from opsearch.ops import tir

    wl = ops.get("shift_linear").workload(x=[4, 8], sign=[3, 8], shift=[3, 8], dtype="int32")
    body = tir.prim_func(wl).script()
    assert "<<" in body and ">>" in body
    assert "*" not in body.split("def main")[1].replace("T.Buffer", "")


def test_examples_validate_and_count_flops():
    for op in ops.all_ops():
        assert op.examples, op.name
        for name in op.examples:
            wl = op.example(name)
            assert op.flops(wl) > 0
            assert op.flops(**wl.json_args()) == op.flops(wl)


def test_non_contiguous_inputs_are_accepted(gen):
    x = torch.randn(1, 4, 12, 10, generator=gen).transpose(2, 3)  # non-contiguous view
    w = torch.randn(4, 4, 3, 3, generator=gen)
    y = F.dilated_conv2d(x, w, padding=2, dilation=2)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=2, dilation=2)
    assert relative_error(y, ref) <= 1e-5


def test_unaligned_inputs_are_accepted(gen):
    base = torch.randn(2 * 3 * 40 + 1, generator=gen)
    u = base[1:].view(2, 3, 40)  # storage offset of 4 bytes: not 64-byte aligned
    k = torch.randn(3, 40, generator=gen)
    y = F.fft_conv1d(u, k)
    ref = ops.get("fft_conv1d").reference(None, u.double(), k.double())
    assert relative_error(y, ref) <= 1e-4


@pytest.mark.parametrize("size,kernel,dilation", [(9, 3, 2), (13, 5, 1), (56, 7, 8), (30, 7, 4), (5, 1, 2), (11, 3, 3)])
def test_neighborhoods_are_the_nearest_windows_on_each_lattice(size, kernel, dilation):
    """Brute force, independent of the formula: among the windows of ``kernel`` consecutive points
    of a query's dilation lattice that contain it, the one whose middle point is nearest."""
    from opsearch.ops.attention import neighborhood

    got = neighborhood(size, kernel, dilation).tolist()
    for i in range(size):
        lattice = list(range(i % dilation, size, dilation))
        windows = [lattice[s : s + kernel] for s in range(len(lattice) - kernel + 1) if i in lattice[s : s + kernel]]
        best = min(windows, key=lambda win: abs(win[kernel // 2] - i))
        assert got[i] == best, (i, got[i], best)
