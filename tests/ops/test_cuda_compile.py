"""Each operator's default CUDA schedule emits source that nvcc really compiles (sm_80, sm_90).

Without a GPU TVM never calls nvcc, so the tests compile the emitted source themselves.
"""

from __future__ import annotations

import pytest

from opsearch import ops
from opsearch.runtime import cuda
from opsearch.errors import CudaCompileError

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(cuda.nvcc_path() is None, reason="nvcc is not installed on this machine"),
]


@pytest.mark.parametrize("name", ops.names())
def test_default_cuda_schedule_compiles(name):
    op = ops.get(name)
    wl = op.example(next(iter(op.examples)))
    src = cuda.cuda_source(wl, "cuda:sm_90")
    assert "__global__" in src
    for arch in ("sm_80", "sm_90"):
        cubin = cuda.compile_cuda(src, arch)
        assert cubin[:4] == b"\x7fELF"


def test_nvcc_errors_carry_its_message():
    with pytest.raises(CudaCompileError, match=r"nvcc failed for sm_90: .*kernel.cu.*error"):
        cuda.compile_cuda("__global__ void f() { undeclared_thing(); }", "sm_90")
