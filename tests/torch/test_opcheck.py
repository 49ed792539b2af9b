"""``torch.library.opcheck`` for every operator: schema, autograd registration, fake tensor,
AOT dispatch with dynamic shapes."""

from __future__ import annotations

import pytest
import torch

from opsearch import ops
from opsearch.torch_bridge import library
from tests.torch.cases import CASES, IDS, inputs


def _float32(tensors, requires_grad):
    out = []
    for t in tensors:
        if t is not None and t.is_floating_point():
            t = t.float().requires_grad_(requires_grad)
        out.append(t)
    return out


@pytest.mark.parametrize("name,args", CASES, ids=IDS)
def test_opcheck(name, args, gen):
    _, tensors, attrs = inputs(name, args, gen)
    result = torch.library.opcheck(library.op(name), (*_float32(tensors, True), *attrs))
    assert set(result.values()) == {"SUCCESS"}, result


def test_opcheck_shift_linear_int32(gen):
    wl, tensors, attrs = inputs("shift_linear", dict(x=[3, 9], sign=[4, 9], shift=[4, 9], dtype="int32"), gen)
    torch.library.opcheck(library.op("shift_linear"), (*tensors, *attrs))


def test_every_operator_is_registered():
    assert {c[0] for c in CASES} == set(ops.names())
    for name in ops.names():
        assert hasattr(torch.ops.opsearch, name) and hasattr(torch.ops.opsearch, f"{name}_vjp")

