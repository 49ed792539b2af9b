"""Bad inputs raise one-line errors from the library's types; awkward but valid inputs
(non-contiguous, unaligned, any integer type for index tensors) run correctly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

import opsearch.functional as F
from opsearch.errors import InputError, WorkloadError


def _one_line(info):
    assert "\n" not in str(info.value)


def test_wrong_device():
    with pytest.raises(InputError, match=r"dilated_conv1d: 'x' is on meta, but opsearch kernels run on the CPU") as info:
        F.dilated_conv1d(torch.randn(1, 2, 8, device="meta"), torch.randn(2, 2, 3))
    _one_line(info)


def test_wrong_dtype():
    with pytest.raises(InputError, match=r"fft_conv1d: 'k' must be float32, got float16"):
        F.fft_conv1d(torch.randn(1, 2, 8), torch.randn(2, 8).half())
    with pytest.raises(InputError, match=r"dilated_conv2d: 'x' must be float32, got float64"):
        torch.ops.opsearch.dilated_conv2d(torch.randn(1, 2, 5, 5).double(), torch.randn(2, 2, 3, 3).double(), None,
                                          [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(InputError, match=r"shift_conv2d: 'shifts' must be int32, got int64"):
        torch.ops.opsearch.shift_conv2d(torch.randn(1, 2, 4, 4), torch.zeros(2, 2, dtype=torch.long), torch.randn(3, 2), None)


def test_wrong_shapes():
    with pytest.raises(WorkloadError, match=r"condconv2d: 'routing' must have shape \[N, E\] = \[2, 3\], got \[2, 4\]") as info:
        F.condconv2d(torch.randn(2, 4, 6, 6), torch.randn(3, 4, 4, 3, 3), torch.rand(2, 4))
    _one_line(info)
    with pytest.raises(WorkloadError, match=r"lightweight_conv1d: 'weight' heads H=4 must divide the channels C=6"):
        F.lightweight_conv1d(torch.randn(1, 6, 10), torch.randn(4, 3))
    with pytest.raises(WorkloadError, match=r"dilated_conv2d: attribute 'padding' must be an int or a pair of ints"):
        F.dilated_conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3), padding=[1, 2, 3])


def test_shape_errors_under_compile():
    f = torch.compile(lambda x, w: F.dilated_conv1d(x, w), backend="eager", fullgraph=True)
    with pytest.raises(Exception, match=r"'weight' dim 1 must equal the input channels C=3, got 2"):
        f(torch.randn(1, 3, 8), torch.randn(4, 2, 3))


def test_non_contiguous_and_unaligned_inputs(gen):
    x = torch.randn(1, 3, 12, 10, generator=gen)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    want = TF.conv2d(x, w, padding=1)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous()
    torch.testing.assert_close(F.dilated_conv2d(xt, w, padding=1), want, rtol=1e-5, atol=1e-5)
    buf = torch.empty(x.numel() + 1)
    xu = buf[1:].view_as(x).copy_(x)  # 4-byte offset: not 64-byte aligned
    assert xu.data_ptr() % 64
    torch.testing.assert_close(F.dilated_conv2d(xu, w, padding=1), want, rtol=1e-5, atol=1e-5)
    y = F.shift_conv2d(torch.randn(1, 2, 4, 4), torch.zeros(2, 2, dtype=torch.long), torch.randn(3, 2))
    assert y.shape == (1, 3, 4, 4)


def test_direct_path_only_when_indistinguishable():
    from opsearch.torch_bridge import library

    x = torch.randn(1, 2, 5, 5)
    assert library.direct_ok([x, None])
    assert not library.direct_ok([x.requires_grad_(), None])
    with torch.no_grad():
        assert library.direct_ok([x, None])
    with torch.device("meta"):  # a torch function mode
        assert not library.direct_ok([x.detach(), None])
