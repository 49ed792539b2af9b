"""Bad workloads, tensors and targets raise the library's error types with messages that name
the parameter and the rule broken."""

from __future__ import annotations

import pytest
import torch

import opsearch.functional as F
from opsearch import ops, targets
from opsearch.errors import InputError, OpsearchError, TargetError, UnknownOperatorError, WorkloadError

BAD_WORKLOADS = [
    ("dilated_conv2d", dict(x=[1, 8, 16], weight=[8, 8, 3, 3]), r"'x' must have rank 4 \[N, C, H, W\], got shape \[1, 8, 16\]"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16], weight=[8, 4, 3, 3]), r"'weight' dim 1 must be C/groups = 8, got 4"),
    ("dilated_conv2d", dict(x=[1, 6, 16, 16], weight=[8, 2, 3, 3], groups=4), r"'groups' \(4\) must divide the input channels C=6"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16], weight=[6, 2, 3, 3], groups=4), r"'groups' \(4\) must divide the output channels O=6"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16], weight=[8, 8, 3, 3], dilation=-2), r"attribute 'dilation' must be >= 1, got -2"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16], weight=[8, 8, 3, 3], padding=[1, 2, 3]), r"attribute 'padding' must be an int or a pair"),
    ("dilated_conv2d", dict(x=[1, 8, 8, 8], weight=[8, 8, 3, 3], dilation=8), r"larger than the padded input"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16], weight=[8, 8, 3, 3], bias=[4]), r"'bias' must have shape \[8\], got \[4\]"),
    ("dilated_conv2d", dict(x=[1, 8, 0, 16], weight=[8, 8, 3, 3]), r"every dimension of 'x' must be positive"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16]), r"missing tensor 'weight'"),
    ("dilated_conv2d", dict(x=[1, 8, 16, 16], weight=[8, 8, 3, 3], dilatation=2), r"unknown parameter 'dilatation'"),
    ("dilated_conv1d", dict(x=[1, 8, 16], weight=[8, 4, 3]), r"'weight' dim 1 must equal the input channels C=8, got 4"),
    ("dilated_conv1d", dict(x=[1, 8, 16], weight=[8, 8, 4], causal=False), r"needs an odd kernel size, got K=4"),
    ("dilated_conv1d", dict(x=[1, 8, 16], weight=[8, 8, 3], dilation=0), r"attribute 'dilation' must be >= 1, got 0"),
    ("dilated_conv1d", dict(x=[1, 8, 16], weight=[8, 8, 3], causal="yes"), r"attribute 'causal' must be true or false"),
    ("shift_conv2d", dict(x=[1, 8, 16, 16], shifts=[4, 2], weight=[8, 8]), r"'shifts' must have shape \[8, 2\]"),
    ("shift_linear", dict(x=[4, 16], sign=[8, 12], shift=[8, 12]), r"'sign' must have shape \[O, 16\]"),
    ("shift_linear", dict(x=[4, 16], sign=[8, 16], shift=[8, 16], bias=[8], dtype="int32"), r"'bias' is not defined for the int32"),
    ("shift_linear", dict(x=[4, 16], sign=[8, 16], shift=[8, 16], dtype="float16"), r"dtype 'float16' is not supported"),
    ("adder_conv2d", dict(x=[1, 8, 16, 16], weight=[8, 3, 3, 3]), r"'weight' dim 1 must equal the input channels C=8"),
    ("condconv2d", dict(x=[2, 8, 16, 16], experts=[4, 8, 8, 3, 3], routing=[2, 3]), r"'routing' must have shape \[N, E\] = \[2, 4\]"),
    ("lightweight_conv1d", dict(x=[1, 10, 16], weight=[4, 3]), r"heads H=4 must divide the channels C=10"),
    ("dynamic_conv1d", dict(x=[1, 8, 16], weight=[1, 2, 3, 15]), r"must have shape \[N=1, H, K, T=16\]"),
    ("involution2d", dict(x=[1, 8, 16, 16], kernel=[1, 3, 9, 16, 16], kernel_size=3, padding=1), r"groups G=3 must divide the channels C=8"),
    ("involution2d", dict(x=[1, 8, 16, 16], kernel=[1, 2, 9, 16, 16], kernel_size=3), r"K\*K=9, Ho=14, Wo=14"),
    ("fft_conv1d", dict(u=[1, 4, 64], k=[4, 32]), r"'k' must have shape \[H, N\] = \[4, 64\]"),
    ("fft_conv1d", dict(u=[1, 4, 64], k=[4, 64], n1=7), r"'n1' \(7\) must divide the sequence length N=64"),
    ("spectral_conv2d", dict(x=[1, 3, 8, 8], weight=[3, 2, 5, 3, 2]), r"spectral_conv2d: 'weight' dim 2 holds the low and the high rows, 2\*m1, so it must be even, got 5"),
    ("spectral_conv2d", dict(x=[1, 3, 8, 8], weight=[3, 2, 10, 3, 2]), r"2\*m1 = 10 row modes exceed the height H=8"),
    ("spectral_conv2d", dict(x=[1, 3, 8, 8], weight=[3, 2, 4, 6, 2]), r"m2 = 6 column modes exceed W/2\+1 = 5"),
    ("spectral_conv2d", dict(x=[1, 3, 8, 8], weight=[4, 2, 4, 3, 2]), r"'weight' must have shape \[3, O, 2\*m1, m2, 2\]"),
    ("dct_channel_attention", dict(x=[1, 6, 7, 7], freqs=[4, 2], w1=[3, 6], w2=[6, 3]), r"'freqs' groups G=4 must divide the channels C=6"),
    ("dct_channel_attention", dict(x=[1, 8, 7, 7], freqs=[4, 2], w1=[3, 8], w2=[8, 2]), r"'w2' must have shape \[8, 3\], got \[8, 2\]"),
    ("neighborhood_attention2d", dict(q=[1, 1, 8, 8, 4], k=[1, 1, 8, 8, 4], v=[1, 1, 8, 8, 4], kernel_size=4), r"'kernel_size' must be odd, got 4"),
    ("neighborhood_attention2d", dict(q=[1, 1, 8, 8, 4], k=[1, 1, 8, 9, 4], v=[1, 1, 8, 8, 4], kernel_size=3), r"'k' must have q's shape \[1, 1, 8, 8, 4\], got \[1, 1, 8, 9, 4\]"),
    ("neighborhood_attention2d", dict(q=[1, 1, 8, 13, 4], k=[1, 1, 8, 13, 4], v=[1, 1, 8, 13, 4], kernel_size=5, dilation=2), r"H // dilation and W // dilation must be >= 5, got 4 and 6"),
    ("deformable_conv2d", dict(x=[1, 4, 8, 8], offset=[1, 18, 8, 8], mask=[1, 9, 6, 6], weight=[4, 4, 3, 3], padding=1), r"'mask' must have shape \[1, 9, 8, 8\] \(G\*KH\*KW = 1\*9\), got \[1, 9, 6, 6\]"),
    ("deformable_conv2d", dict(x=[1, 4, 8, 8], offset=[1, 18, 6, 6], mask=[1, 9, 6, 6], weight=[4, 4, 3, 3], padding=1), r"'offset' must have shape \[1, 18, 8, 8\], got \[1, 18, 6, 6\]"),
    ("deformable_conv2d", dict(x=[1, 4, 8, 8], offset=[1, 20, 8, 8], mask=[1, 10, 8, 8], weight=[4, 4, 3, 3], padding=1), r"'offset' dim 1 must be 2\*G\*KH\*KW = 2\*G\*9"),
]


@pytest.mark.parametrize("name,args,message", BAD_WORKLOADS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_WORKLOADS)])
def test_bad_workload(name, args, message):
    with pytest.raises(WorkloadError, match=message) as info:
        ops.get(name).workload(**args)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(name + ":")


def test_unknown_operator():
    with pytest.raises(UnknownOperatorError, match=r"unknown operator 'dilated_conv3d' \(known: adder_conv2d,"):
        ops.get("dilated_conv3d")


@pytest.mark.parametrize(
    "target,message",
    [
        ("gpu", r"unknown target 'gpu': expected 'cpu', 'llvm:<mcpu>' or 'cuda:sm_XX'"),
        ("llvm", r"target 'llvm' is ambiguous"),
        ("llvm:pentium9000", r"unknown LLVM CPU 'pentium9000'"),
        ("llvm:Zen 4!", r"malformed target"),
        ("cuda", r"target 'cuda' needs an architecture"),
        ("cuda:sm_99", r"unknown CUDA architecture 'sm_99'"),
        ("", r"target must be a non-empty string"),
    ],
)
def test_bad_target(target, message):
    with pytest.raises(TargetError, match=message):
        targets.resolve(target)


def test_targets_resolve():
    cpu = targets.resolve("cpu")
    assert cpu.kind == "llvm" and cpu.name == f"llvm:{targets.host_cpu()}"
    assert cpu.config["num-cores"] >= 1 and cpu.config["mcpu"] == targets.host_cpu()
    cuda = targets.resolve("cuda:sm_90")
    assert cuda.config["arch"] == "sm_90" and cuda.config["max_threads_per_block"] == 1024
    assert str(cuda.tvm().kind) == "cuda"


def test_functional_rejects_bad_tensors():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    with pytest.raises(InputError, match=r"dilated_conv2d: 'x' must be float32, got float64"):
        F.dilated_conv2d(x.double(), w)
    with pytest.raises(InputError, match=r"'weight' must be a torch.Tensor, got list"):
        F.dilated_conv2d(x, [[1.0]])
    with pytest.raises(InputError, match=r"'x' is on meta, but opsearch kernels run on the CPU"):
        F.dilated_conv2d(x.to("meta"), w)
    with pytest.raises(WorkloadError, match=r"'weight' dim 1 must be C/groups = 4, got 2"):
        F.dilated_conv2d(x, torch.randn(4, 2, 3, 3))
    with pytest.raises(InputError, match=r"shift_linear: 'x' must be float32, got int64"):
        F.shift_linear(torch.ones(2, 4, dtype=torch.int64), torch.ones(3, 4), torch.ones(3, 4))
    with pytest.raises(InputError, match=r"'sign' must be int8, got float32"):
        F.shift_linear(torch.randn(2, 4), torch.ones(3, 4), torch.ones(3, 4, dtype=torch.int8))


def test_all_errors_share_a_base():
    for cls in (InputError, TargetError, UnknownOperatorError, WorkloadError):
        assert issubclass(cls, OpsearchError)
