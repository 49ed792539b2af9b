"""Build here, measure there: a CUDA candidate bundle exported after a no-measure tune, run by
``opsearch.gpu_runner`` (with a CPU launcher here; with CuPy on a GPU when there is one), and
its measurements imported into the database. Bad bundles and bad measurement files give one
line and add nothing."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess

import pytest

from opsearch import ops
from opsearch.runtime import cuda

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(cuda.nvcc_path() is None, reason="nvcc is not installed")]

TARGET = "cuda:sm_90"
WORKLOADS = [
    ops.get("dilated_conv1d").workload(x=[1, 8, 45], weight=[8, 8, 3], dilation=2),  # odd length
    ops.get("fft_conv1d").workload(u=[1, 3, 64], k=[3, 64]),  # constants (twiddles) and many launches
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(db url, bundle dir, manifest): a 4-trial no-measure tune of the first workload (30 s;
    the FFT's many-stage CUDA search takes minutes), exported with the second's default."""
    from opsearch import db as dbmod
    from opsearch.runtime.bundle import export_bundle
    from opsearch.search import tune

    tmp = tmp_path_factory.mktemp("bundle")
    url = f"sqlite:///{tmp / 'cuda.db'}"
    db = dbmod.connect(url)
    tune(WORKLOADS[0], TARGET, db, trials=4, batch=4, measure=False)
    manifest = export_bundle(db, WORKLOADS, TARGET, tmp / "bundle", limit=3)
    return url, tmp / "bundle", manifest


def _copy_db(url: str, tmp_path) -> str:
    """A private copy of the fixture's SQLite database (its WAL file too: records live there
    until a checkpoint)."""
    import sqlite3

    dst = tmp_path / "copy.db"
    src = sqlite3.connect(url.removeprefix("sqlite:///"))
    out = sqlite3.connect(dst)
    src.backup(out)
    out.close()
    src.close()
    return f"sqlite:///{dst}"


class ReferenceLauncher:
    """Runs a candidate on the CPU by computing the operator's reference into its output
    (``wrong`` candidates are perturbed, ``fail`` ones raise): the runner's checks and files
    without a GPU."""

    device = "cpu"

    def __init__(self, wrong=(), fail=()):
        self.wrong, self.fail = set(wrong), set(fail)

    def bind(self, c, tensors, workspaces):
        wl = c["_workload"]
        op = ops.get(wl.op)
        inputs = dict(zip(c["inputs"], tensors))
        out = tensors[-1]

        def run():
            if c["id"] in self.fail:
                raise RuntimeError("CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered")
            y = op.reference(wl.args, **inputs)
            out.copy_(y * 1.05 if c["id"] in self.wrong else y)

        return run


def test_bundle_holds_every_candidate_with_its_launch_program(exported):
    _, root, m = exported
    assert m["target"] == TARGET and m["skipped"] == []
    assert len(m["candidates"]) == 4  # the default schedule + the 2 newest unmeasured; the FFT's default
    for c in m["candidates"]:
        cubin = (root / c["cubin"]).read_bytes()
        assert hashlib.sha256(cubin).hexdigest() == c["cubin_sha256"] and len(cubin) > 1000
        assert "__global__" in (root / c["source"]).read_text()
        assert len(c["params"]) == len(c["inputs"]) + len(c["constants"]) + 1
        for ln in c["launches"]:
            assert ln["kernel"] in (root / c["source"]).read_text()
            assert all(d >= 1 for d in ln["grid"] + ln["block"])
    fft = [c for c in m["candidates"] if c["op"] == "fft_conv1d"]
    assert fft and all(c["constants"] and len(c["launches"]) > 2 for c in fft)
    labels = [c["label"] for c in m["candidates"]]
    assert labels.count("default") == 2


def test_nvcc_cubin_matches_what_ptxas_reports(exported):
    """The cubin is real machine code for sm_90 (cuobjdump, when present, lists its kernels)."""
    _, root, m = exported
    tool = shutil.which("cuobjdump")
    if tool is None:
        pytest.skip("cuobjdump is not installed")
    c = m["candidates"][0]
    out = subprocess.run([tool, "--list-elf", str(root / c["cubin"])], capture_output=True, text=True)
    assert out.returncode == 0 and "sm_90" in out.stdout


def test_runner_checks_times_and_writes_records(exported, tmp_path):
    from opsearch.gpu_runner import run_bundle, summary_table

    _, root, m = exported
    launcher = ReferenceLauncher(wrong={1}, fail={2})
    doc = run_bundle(root, tmp_path / "out.json", launcher=launcher, repeats=3, compile_too=False, log=lambda s: None)
    status = {r["module_hash"] + r["label"]: r["status"] for r in doc["records"]}
    assert len(doc["records"]) == 4
    assert [r["status"] for r in doc["records"]] == ["ok", "wrong_result", "run_error", "ok"]
    assert "relative error" in doc["records"][1]["error"] and "ILLEGAL_ADDRESS" in doc["records"][2]["error"]
    assert all(len(r["run_us"]) == 3 and min(r["run_us"]) > 0 for r in doc["records"] if r["status"] == "ok")
    assert len(status) == 4
    assert len(doc["baselines"]) == 2 and all(len(b["eager_us"]) == 3 and b["eager_rel_error"] < 1e-4 for b in doc["baselines"])
    table = summary_table(doc)
    assert "dilated_conv1d" in table and "geo-mean" in table
    assert json.loads((tmp_path / "out.json").read_text())["kind"] == "opsearch-cuda-measurements"


def test_import_fills_unmeasured_candidates_all_or_nothing(exported, tmp_path):
    from click.testing import CliRunner

    from opsearch import db as dbmod
    from opsearch.cli.main import cli
    from opsearch.gpu_runner import run_bundle

    url, root, m = exported
    copy_url = _copy_db(url, tmp_path)
    out = tmp_path / "out.json"
    run_bundle(root, out, launcher=ReferenceLauncher(wrong={1}), repeats=3, baselines=False, log=lambda s: None)
    runner = CliRunner()
    res = runner.invoke(cli, ["db", "import-measurements", str(out), "--db", copy_url, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    # the two defaults were never stored: added; the two unmeasured ones get their measurement
    assert (report["filled"], report["added"], report["kept"]) == (2, 2, 0)
    assert report["by_status"] == {"ok": 3, "wrong_result": 1}
    db = dbmod.connect(copy_url)
    wl = WORKLOADS[0]
    best = db.best(wl, TARGET, shipped=False)
    assert best is not None and best.status == "ok" and best.mean_us > 0
    statuses = sorted(r.status for r in db.history(wl, TARGET))
    # 4 trials stored, the 2 newest exported (--export-limit 3 with the default): 2 still unmeasured
    assert statuses.count("unmeasured") == 2 and statuses.count("wrong_result") == 1 and len(statuses) == 5
    # again: every candidate is measured already, nothing changes
    res = runner.invoke(cli, ["db", "import-measurements", str(out), "--db", copy_url, "--json"])
    assert json.loads(res.output)["kept"] == 4


def _bad_files(tmp_path, doc):
    def edit(fn):
        d = copy.deepcopy(doc)
        fn(d)
        return d

    def hostile(d):
        d["records"][3]["trace"][0].append(["Annotate", ["b0"], ["pragma_import_c", "int x;"], []])

    cases = {
        "pragma_import_c": edit(hostile),
        "not a measurement": edit(lambda d: d["records"][2].update(status="unmeasured")),
        "llvm target": edit(lambda d: d.update(target="llvm:znver5")),
        "other target": edit(lambda d: d["records"][1].update(target="cuda:sm_80")),
        "nan time": edit(lambda d: d["records"][0].update(run_us=[float("nan")])),
        "negative time": edit(lambda d: d["records"][0].update(run_us=[-3.0])),
        "wrong kind": edit(lambda d: d.update(kind="opsearch-bundle")),
        "no records": edit(lambda d: d.update(records=[])),
        "unknown op": edit(lambda d: d["records"][0].update(op="dilated_conv9d")),
        "wrong hash": edit(lambda d: d["records"][0].update(module_hash="123")),
    }
    paths = {}
    for name, d in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.json"
        p.write_text(json.dumps(d))
        paths[name] = p
    trunc = tmp_path / "truncated.json"
    trunc.write_text(json.dumps(doc)[:500])
    paths["truncated"] = trunc
    return paths


def test_bad_measurement_files_add_nothing(exported, tmp_path):
    from click.testing import CliRunner

    from opsearch import db as dbmod
    from opsearch.cli.main import cli
    from opsearch.gpu_runner import run_bundle

    url, root, _ = exported
    copy_url = _copy_db(url, tmp_path)
    out = tmp_path / "out.json"
    doc = run_bundle(root, out, launcher=ReferenceLauncher(), repeats=2, baselines=False, log=lambda s: None)
    db = dbmod.connect(copy_url)
    before = sorted((r.module_hash, r.status) for wl in WORKLOADS for r in db.history(wl, TARGET))
    for name, path in _bad_files(tmp_path, doc).items():
        res = CliRunner().invoke(cli, ["db", "import-measurements", str(path), "--db", copy_url])
        assert res.exit_code != 0, name
        lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in res.output, (name, res.output)
        assert str(path.name) in lines[0], (name, lines[0])
        after = sorted((r.module_hash, r.status) for wl in WORKLOADS for r in db.history(wl, TARGET))
        assert after == before, name


def test_bad_bundles_are_one_line(exported, tmp_path):
    from opsearch.gpu_runner import main
    from opsearch.runtime.bundle import BundleError, load_bundle

    _, root, m = exported

    def broken(fn, name):
        d = tmp_path / name
        shutil.copytree(root, d)
        fn(d)
        return d

    def tamper_cubin(d):
        p = d / m["candidates"][0]["cubin"]
        p.write_bytes(p.read_bytes()[:-16] + b"\0" * 16)

    def edit_manifest(fn):
        def apply(d):
            doc = json.loads((d / "manifest.json").read_text())
            fn(doc)
            (d / "manifest.json").write_text(json.dumps(doc))
        return apply

    cases = {
        "sha256": broken(tamper_cubin, "tampered"),
        "outside the bundle": broken(edit_manifest(lambda doc: doc["candidates"][0].update(cubin="../../etc/passwd")), "escape"),
        "unknown operator": broken(edit_manifest(lambda doc: doc["candidates"][1].update(op="nope_conv")), "op"),
        "bad grid": broken(edit_manifest(lambda doc: doc["candidates"][0]["launches"][0].update(grid=[0, 1, 1])), "grid"),
        "out of range": broken(edit_manifest(lambda doc: doc["candidates"][0]["launches"][0]["args"].append({"param": 99})), "arg"),
        "schema": broken(edit_manifest(lambda doc: doc.update(schema=7)), "schema"),
        "no manifest.json": tmp_path,
    }
    for why, d in cases.items():
        with pytest.raises(BundleError, match=why):
            load_bundle(d)
        assert main([str(d), str(tmp_path / "never.json")]) == 2
        assert not (tmp_path / "never.json").exists()


def test_host_code_of_another_form_is_refused():
    from opsearch.runtime.bundle import BundleError, launch_program

    script = '''
@T.prim_func
def main(x: T.handle, y: T.handle):
    for i in range(4):
        T.call_ffi_kernel("k", x.data, 1, 32, launch_params=["blockIdx.x", "threadIdx.x"])
'''
    with pytest.raises(BundleError, match="cannot export the statement"):
        launch_program(script)
    dynamic = '''
@T.prim_func
def main(x: T.handle, n: T.int32):
    T.call_ffi_kernel("k", x.data, n, 32, launch_params=["blockIdx.x", "threadIdx.x"])
'''
    with pytest.raises(BundleError, match="not a constant"):
        launch_program(dynamic)


def test_export_needs_a_cuda_target_and_no_measure(tmp_path):
    from click.testing import CliRunner

    from opsearch.cli.main import cli

    res = CliRunner().invoke(cli, ["tune", "dilated_conv1d", "--example", "tcn_d8", "--target", "cpu",
                                   "--export-candidates", str(tmp_path / "b"), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert res.exit_code != 0 and "needs a cuda:sm_XX --target and --no-measure" in res.output


def test_runner_on_a_gpu(exported, tmp_path):
    """On a machine with a GPU and CuPy: the real launcher's outputs match the reference."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here (the runner's GPU path runs in benchmarks/gpu_session.sh)")
    pytest.importorskip("cupy", reason="CuPy is not installed")
    from opsearch.gpu_runner import run_bundle

    _, root, _ = exported
    doc = run_bundle(root, tmp_path / "gpu.json", repeats=5, compile_too=False, log=lambda s: None)
    assert all(r["status"] == "ok" for r in doc["records"]), [(r["label"], r["error"]) for r in doc["records"]]


def test_runner_imports_without_tvm(exported):
    """The GPU machine has no TVM: the runner and the bundle reader must not import it."""
    import subprocess
    import sys

    _, root, m = exported
    code = ("import sys; sys.modules['tvm'] = None; sys.modules['tvm_ffi'] = None\n"
            "from opsearch.gpu_runner import load_bundle\n"
            f"print(len(load_bundle({str(root)!r})['candidates']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(m["candidates"]))


def test_runner_writes_the_formats_the_database_reads():
    from opsearch import gpu_runner
    from opsearch.db import measurements, records

    assert gpu_runner.RESULTS_KIND == measurements.RESULTS_KIND
    assert gpu_runner.RECORD_SCHEMA == records.RECORD_SCHEMA
