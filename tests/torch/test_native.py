"""The native (C++) dispatcher kernels: built and used where a C++ compiler exists, served from a
per-shape plan after the first call, correct on awkward layouts and from several threads, reset
with the Python kernels, and the Python kernels alone still work (OPSEARCH_NATIVE=0)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

from opsearch.torch_bridge import library, native

pytestmark = pytest.mark.skipif(native._compiler() is None, reason="no C++ compiler on this machine")


def _conv(x, w, b=None, padding=2, dilation=2):
    return torch.ops.opsearch.dilated_conv2d(x, w, b, [1, 1], [padding, padding], [dilation, dilation], 1)


def _ref(x, w, b=None, padding=2, dilation=2):
    out = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=padding, dilation=dilation)
    return out.float()


def test_native_kernels_are_loaded_and_serve_repeated_calls(gen):
    assert native.load(), native._state.get("error")
    x, w, b = (torch.randn(2, 5, 11, 9, generator=gen), torch.randn(7, 5, 3, 3, generator=gen),
               torch.randn(7, generator=gen))
    before = native.stats()
    first = _conv(x, w, b)
    mid = native.stats()
    again = _conv(x, w, b)
    after = native.stats()
    assert mid["slow_calls"] == before["slow_calls"] + 1 and mid["plans"] == before["plans"] + 1
    assert after["native_calls"] == mid["native_calls"] + 1 and after["slow_calls"] == mid["slow_calls"]
    torch.testing.assert_close(first, _ref(x, w, b), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_native_path_handles_non_contiguous_and_misaligned_inputs(gen):
    base = torch.randn(1, 6, 13, 15, generator=gen)
    w = torch.randn(4, 6, 3, 3, generator=gen)
    views = {
        "sliced": base[:, :, :, 2:],  # non-contiguous
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "offset": torch.randn(1 + 6 * 13 * 15, generator=gen)[1:].view(1, 6, 13, 15),  # 4-byte offset
    }
    for name, x in views.items():
        for _ in range(2):  # first call makes the plan, the second runs natively
            torch.testing.assert_close(_conv(x, w), _ref(x, w), rtol=1e-4, atol=1e-4, msg=name)


def test_reset_drops_native_plans(gen):
    x, w = torch.randn(1, 3, 8, 8, generator=gen), torch.randn(3, 3, 3, 3, generator=gen)
    _conv(x, w)
    assert native.stats()["plans"] >= 1
    library.reset()
    assert native.stats()["plans"] == 0
    torch.testing.assert_close(_conv(x, w), _ref(x, w), rtol=1e-4, atol=1e-4)


def test_native_calls_from_threads(gen):
    shapes = [(1, 4, 9, 9), (2, 4, 7, 12), (1, 4, 16, 5)]
    w = torch.randn(6, 4, 3, 3, generator=gen)
    xs = [torch.randn(*s, generator=gen) for s in shapes]
    refs = [_ref(x, w) for x in xs]
    errors = []

    def worker(k):
        try:
            for i in range(20):
                j = (i + k) % len(xs)
                torch.testing.assert_close(_conv(xs[j], w), refs[j], rtol=1e-4, atol=1e-4)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_recording_sees_every_call_on_the_native_path(gen):
    x, w = torch.randn(1, 3, 9, 9, generator=gen), torch.randn(3, 3, 3, 3, generator=gen)
    _conv(x, w)
    _conv(x, w)  # a plan exists: outside recording this is native
    with library.recording() as rec:
        _conv(x, w)
        _conv(x, w)
    assert len(rec) == 2 and rec[0].op == "dilated_conv2d"


def test_bad_input_through_the_native_kernel_is_a_clear_error(gen):
    from opsearch.errors import InputError, WorkloadError

    x, w = torch.randn(1, 3, 9, 9, generator=gen), torch.randn(3, 3, 3, 3, generator=gen)
    _conv(x, w)
    with pytest.raises(InputError, match="must be float32, got float64"):
        _conv(x.double(), w.double())
    with pytest.raises(WorkloadError, match="weight"):
        _conv(x, w[:, :2])


PYTHON_KERNELS = r"""
import torch, torch.nn.functional as F
from opsearch.torch_bridge import library, native
assert not native.load()
g = torch.Generator().manual_seed(int(__import__("sys").argv[1]))
x = torch.randn(1, 3, 10, 11, generator=g, dtype=torch.float64)
w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
xf, wf = x.float().requires_grad_(), w.float().requires_grad_()
y = torch.ops.opsearch.dilated_conv2d(xf, wf, None, [1, 1], [2, 2], [2, 2], 1)
y.square().sum().backward()
xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
F.conv2d(xr, wr, padding=2, dilation=2).square().sum().backward()
torch.testing.assert_close(y.double(), F.conv2d(x, w, padding=2, dilation=2), rtol=1e-4, atol=1e-4)
torch.testing.assert_close(xf.grad.double(), xr.grad, rtol=1e-3, atol=1e-3)
torch.testing.assert_close(wf.grad.double(), wr.grad, rtol=1e-3, atol=1e-3)
print("python kernels ok")
"""


def test_python_kernels_alone_still_work():
    env = dict(os.environ, OPSEARCH_NATIVE="0")
    seed = int.from_bytes(os.urandom(2), "little")
    p = subprocess.run([sys.executable, "-c", PYTHON_KERNELS, str(seed)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0 and "python kernels ok" in p.stdout, (seed, p.stderr[-3000:])


def test_failed_build_falls_back_with_its_reason(tmp_path):
    script = ("import os; from opsearch.torch_bridge import library, native; "
              "assert not native._state['ok']; print(native._state['error'].splitlines()[0])")
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"), OPSEARCH_NATIVE_DIR=str(tmp_path / "native"))
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "native torch kernels unavailable" in p.stderr and "no-such-compiler" in p.stdout + p.stderr


PARALLEL_POOL = """
import sys, torch
from opsearch.torch_bridge import library, native
gen = torch.Generator().manual_seed(int(sys.argv[1]))
x, w = torch.randn(2, 16, 37, 41, generator=gen), torch.randn(24, 16, 3, 3, generator=gen)
before = native.stats()["parallel_launches"]
ys = [torch.ops.opsearch.dilated_conv2d(x, w, None, [1, 1], [2, 2], [2, 2], 1) for _ in range(3)]
ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=2, dilation=2)
err = float((ys[0].double() - ref).norm() / ref.norm())
assert err < 1e-5 and all(torch.equal(ys[0], y) for y in ys), err
print("launches", native.stats()["parallel_launches"] - before)
"""


@pytest.mark.parametrize("mode", ["torch", "tvm"])
def test_parallel_loops_run_on_the_chosen_thread_pool(mode):
    """By default a kernel called from PyTorch runs its parallel loops on PyTorch's pool (every
    launch counted by the native library); OPSEARCH_PARALLEL=tvm keeps TVM's own pool."""
    env = dict(os.environ, OPSEARCH_PARALLEL=mode)
    seed = int.from_bytes(os.urandom(2), "little")
    p = subprocess.run([sys.executable, "-c", PARALLEL_POOL, str(seed)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, (seed, p.stderr[-3000:])
    launches = int(p.stdout.split("launches")[1])
    assert launches >= 3 if mode == "torch" else launches == 0, p.stdout
