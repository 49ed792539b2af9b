"""CUDA kernels from PyTorch (``opsearch.runtime.cuda_kernel``, ``opsearch.load(target="cuda:...")``,
``torch.ops.opsearch`` on CUDA tensors).

Here (no GPU): the kernel is really built (TVM lowers, nvcc compiles a cubin), cached by content
hash, refuses CPU tensors with one line, and its launches reach the driver zero-copy (a fake
driver records every launch: kernel order, grid, block, shared memory, the stream, and each
argument's device pointer, which must be the caller's tensors' own). With a GPU, the tests at
the end run the real thing against the float64 reference.
"""

from __future__ import annotations

import ctypes
import json

import pytest
import torch

import opsearch
from opsearch import ops
from opsearch.errors import InputError, TargetError
from opsearch.runtime.cuda import nvcc_path

needs_nvcc = pytest.mark.skipif(nvcc_path() is None, reason="nvcc not found: CUDA kernels cannot be compiled here")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="no CUDA GPU here: the kernels are built and checked up to the launch only")
TARGET = "cuda:sm_90"


class FakeDriver:
    """Records what a launch hands the CUDA driver; loads nothing, runs nothing."""

    def __init__(self):
        self.devices, self.modules, self.functions, self.launches = [], [], [], []

    def use_device(self, index):
        self.devices.append(index)

    def load_module(self, image):
        self.modules.append(image)
        return len(self.modules)

    def function(self, module, name, shared_bytes=0):
        self.functions.append((module, name, shared_bytes))
        return name

    def launch(self, fn, grid, block, shared_bytes, stream, args):
        self.launches.append({"kernel": fn, "grid": list(grid), "block": list(block), "shared": shared_bytes,
                              "stream": stream,
                              "args": [a.value if isinstance(a, ctypes.c_int32) else ("ptr", a.value) for a in args]})


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('cuda') / 'empty.db'}"


@needs_nvcc
def test_load_builds_a_cubin_once_and_serves_it_from_the_cache(db_url, monkeypatch):
    from opsearch.ops import tir
    from opsearch.runtime import cache

    args = dict(x=(1, 8, 37), weight=(8, 8, 3), dilation=2)
    before = cache.stats.compiles, cache.stats.hits, cache.stats.memo_hits
    f = opsearch.load("dilated_conv1d", target=TARGET, db=db_url, **args)
    assert f.device == "cuda" and f.schedule == "default schedule"
    assert f.kernel.cubin[:4] == b"\x7fELF" and f.kernel.program["launches"]
    assert cache.stats.compiles == before[0] + 1
    # The second load finds the cubin through the default schedule's memo: no TVM scheduling.
    with monkeypatch.context() as m:
        m.setattr(tir, "default_schedule", lambda *a: pytest.fail("default schedule built for a cached kernel"))
        g = opsearch.load("dilated_conv1d", target=TARGET, db=db_url, **args)
    assert cache.stats.hits == before[1] + 1 and cache.stats.compiles == before[0] + 1
    assert cache.stats.memo_hits == before[2] + 1
    assert g.kernel.cubin == f.kernel.cubin and g.kernel.program == f.kernel.program
    # A corrupted cubin is rebuilt, never loaded.
    digest = next(p for p in cache.cache_dir().glob("*.cubin"))
    digest.write_bytes(b"\x7fELF garbage")
    h = opsearch.load("dilated_conv1d", target=TARGET, db=db_url, **args)
    assert h.kernel.cubin == f.kernel.cubin and cache.stats.compiles == before[0] + 2


@needs_nvcc
def test_cpu_tensors_wrong_shapes_and_counts_are_one_line_errors(db_url):
    f = opsearch.load("dilated_conv1d", target=TARGET, db=db_url, x=(1, 8, 37), weight=(8, 8, 3), dilation=2)
    x, w = torch.randn(1, 8, 37), torch.randn(8, 8, 3)
    with pytest.raises(InputError, match=r"'x' must be a CUDA tensor for this CUDA kernel, got a tensor on cpu"):
        f(x, w)
    with pytest.raises(InputError, match=r"expected 2 tensors \(x, weight\), got 1"):
        f(x)


def test_unknown_target_kinds_are_refused():
    with pytest.raises(TargetError):
        opsearch.load("dilated_conv1d", target="rocm", x=(1, 8, 37), weight=(8, 8, 3))


@needs_nvcc
@pytest.mark.parametrize("op_name, args", [
    ("dilated_conv1d", dict(x=(2, 6, 41), weight=(5, 6, 3), dilation=3)),
    ("adder_conv2d", dict(x=(1, 5, 9, 11), weight=(7, 5, 3, 3), padding=1)),
    ("condconv2d", dict(x=(2, 4, 9, 9), experts=(3, 6, 4, 3, 3), routing=(2, 3), padding=1)),
])
def test_launches_reach_the_driver_with_the_callers_memory(op_name, args, db_url):
    """Every launch of the program, in order, with its geometry; every buffer argument is the
    device pointer of the caller's input, the returned output, a constant or a workspace."""
    from opsearch.runtime.cuda_kernel import CudaKernel

    built = opsearch.load(op_name, target=TARGET, db=db_url, **args).kernel
    fake = FakeDriver()
    k = CudaKernel(built.workload, built.program, built.cubin, drv=fake)
    wl = built.workload
    op = ops.get(op_name)
    gen = torch.Generator().manual_seed(7)
    ins = [torch.randn(*wl.args[p.name], generator=gen) for p in op.tensors if wl.args[p.name] is not None]
    out = k(*ins)
    assert tuple(out.shape) == tuple(op.output_shape(wl.args))
    assert fake.modules == [built.cubin] and [f[1] for f in fake.functions] == [ln["kernel"] for ln in built.program["launches"]]
    params = [t.data_ptr() for t in ins] + [t.data_ptr() for t in k._per_device[0][1]] + [out.data_ptr()]
    assert len(fake.launches) == len(built.program["launches"])
    for got, ln in zip(fake.launches, built.program["launches"]):
        assert got["kernel"] == ln["kernel"] and got["grid"] == ln["grid"] and got["block"] == ln["block"]
        assert got["shared"] == ln["shared_bytes"] and got["stream"] == 0
        for a, want in zip(got["args"], ln["args"]):
            if "param" in want:
                assert a == ("ptr", params[want["param"]])
            elif "workspace" in want:
                assert a[0] == "ptr" and a[1] not in params
            else:
                assert a == want["int32"]
    # The module is loaded once per device; a second call launches again without loading.
    k(*ins)
    assert len(fake.modules) == 1 and len(fake.launches) == 2 * len(built.program["launches"])


@needs_nvcc
def test_the_gpu_runners_torch_path_reports_a_kernel_that_writes_nothing(tmp_path, db_url):
    """``gpu_runner.check_torch_path`` on a real bundle with a driver that runs nothing: the
    NaN-poisoned output stays NaN, so the check must report a wrong result, not ok."""
    from opsearch import db as dbmod
    from opsearch.gpu_runner import check_torch_path
    from opsearch.runtime.bundle import export_bundle, load_bundle

    wl = ops.get("dilated_conv1d").workload(x=[1, 4, 19], weight=[4, 4, 3], dilation=2)
    export_bundle(dbmod.connect(db_url), [wl], TARGET, tmp_path / "bundle", limit=1)
    m = load_bundle(tmp_path / "bundle")
    rows = check_torch_path(m, device="cpu", drv=FakeDriver(), log=lambda *_: None)
    assert [r["status"] for r in rows] == ["wrong_result"] and "plain" in rows[0]["error"]
    json.dumps(rows)  # the results file holds them


# ----------------------------------------------------------------------------- on a GPU
CASES = [
    ("dilated_conv1d", dict(x=(2, 6, 41), weight=(5, 6, 3), dilation=3)),
    ("dilated_conv1d", dict(x=(1, 16, 128), weight=(16, 16, 5), dilation=4, causal=True)),
    ("adder_conv2d", dict(x=(1, 5, 9, 11), weight=(7, 5, 3, 3), padding=1)),
    ("condconv2d", dict(x=(2, 4, 9, 9), experts=(3, 6, 4, 3, 3), routing=(2, 3), padding=1)),
    ("lightweight_conv1d", dict(x=(2, 8, 33), weight=(2, 5))),
]


@needs_gpu
@pytest.mark.parametrize("op_name, args", CASES)
def test_load_on_cuda_tensors_matches_the_reference(op_name, args, db_url):
    from opsearch.torch_bridge.library import cuda_target

    op = ops.get(op_name)
    f = opsearch.load(op_name, target=cuda_target(torch.device("cuda")), db=db_url, **args)
    wl = f.workload
    gen = torch.Generator().manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
    t64 = {p.name: op.sample(wl.args, p, wl.args[p.name], gen, torch.float64) for p in op.tensors
           if wl.args[p.name] is not None}
    ref = op.reference(wl.args, **t64)
    ins = [(v.float() if v.is_floating_point() else v).cuda() for v in t64.values()]
    out = f(*ins)
    assert out.is_cuda
    torch.testing.assert_close(out.double().cpu(), ref.cpu(), rtol=op.tolerance or 1e-5, atol=op.tolerance or 1e-5)


@needs_gpu
def test_torch_ops_dispatch_cuda_tensors_to_the_cuda_kernel():
    x, w = torch.randn(1, 8, 37, device="cuda"), torch.randn(8, 8, 3, device="cuda")
    y = opsearch.functional.dilated_conv1d(x, w, dilation=2)
    want = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (4, 0)), w, dilation=2)
    assert y.is_cuda
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the driver loads")
def test_without_a_gpu_the_driver_is_a_one_line_error():
    from opsearch.runtime.cuda_kernel import CudaRuntimeError, Driver

    with pytest.raises(CudaRuntimeError) as e:
        Driver()
    assert len(str(e.value).splitlines()) == 1 and ("CUDA driver" in str(e.value) or "cuInit" in str(e.value))


@needs_gpu
def test_tensors_on_two_devices_are_a_one_line_error():
    x, w = torch.randn(1, 8, 37, device="cuda"), torch.randn(8, 8, 3)
    with pytest.raises(InputError, match="put them on one device"):
        opsearch.functional.dilated_conv1d(x, w, dilation=2)
