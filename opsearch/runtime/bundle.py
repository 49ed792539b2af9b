"""Build here, measure there: a self-contained bundle of compiled CUDA candidates.

``export_bundle(db, workloads, target, out_dir)`` takes each workload's candidates stored as
``unmeasured`` for a CUDA target (what ``opsearch tune --no-measure`` proposes) plus its default
schedule, replays each trace (through the allow-list), lowers it, compiles TVM's CUDA source
with nvcc to a cubin, and writes ``out_dir/manifest.json`` with ``kernels/<hash>.cubin`` and
``.cu`` beside it. The manifest says everything a machine without TVM needs to run a candidate:
the workload (operator and arguments, so ``opsearch.ops`` rebuilds the inputs from the seed and
computes the reference there), its kernel argument order (tensors, constants, output), the
device workspaces the host code allocates, and each kernel launch in order with its arguments,
grid, block and dynamic shared memory. The launch program is read from the host function after
TVM splits host and device code; host code of any other form is refused, naming it.
``python -m opsearch.gpu_runner`` runs the bundle; ``opsearch db import-measurements`` stores
what it measured.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import OpsearchError, TargetError
from ..ops.spec import Workload
from ..targets import TargetSpec, resolve

BUNDLE_SCHEMA = 1
BUNDLE_KIND = "opsearch-cuda-bundle"
MAX_BUNDLE_BYTES = 48 << 20  # what a device session can carry with the repository (64 MiB in all)
_LAUNCH_AXES = {"blockIdx.x": ("grid", 0), "blockIdx.y": ("grid", 1), "blockIdx.z": ("grid", 2),
                "threadIdx.x": ("block", 0), "threadIdx.y": ("block", 1), "threadIdx.z": ("block", 2)}
_DYN_SHARED = "tirx.use_dyn_shared_memory"


class BundleError(OpsearchError, ValueError):
    """A bundle that cannot be written or read as one."""


def lower_cuda(mod, target: TargetSpec) -> tuple[str, dict]:
    """(CUDA source, launch program) of a scheduled IRModule for a CUDA target."""
    import tvm

    captured = {}

    @tvm.instrument.pass_instrument
    class _AfterSplit:
        def run_after_pass(self, m, info):
            if info.name.endswith("SplitHostDevice"):
                captured["mod"] = m

    with tvm.transform.PassContext(instruments=[_AfterSplit()]):
        ex = tvm.compile(mod, target=target.tvm())
    if "mod" not in captured:
        raise BundleError("TVM's pipeline ran no SplitHostDevice pass: cannot read the kernel launches")
    source = ex.mod.imports[0].inspect_source()
    return source, launch_program(captured["mod"]["main"].script())


def _lit(node, what: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise BundleError(f"host code: {what} is not a constant ({ast.unparse(node)}): dynamic shapes are not exported") from None


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def launch_program(host_script: str) -> dict:
    """The kernel launches of a host function (its TVMScript after SplitHostDevice).

    Returns ``{"params": [...], "workspaces": [{"elems", "dtype"}], "launches": [{"kernel",
    "args", "grid", "block", "shared_bytes"}]}``; each launch argument is ``{"param": i}``,
    ``{"workspace": j}`` or ``{"int32": v}``."""
    tree = ast.parse(host_script)
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef)), None)
    if fn is None:
        raise BundleError("host code: no function")
    params = [a.arg for a in fn.args.args]
    names: dict[str, dict] = {p: {"param": i} for i, p in enumerate(params)}
    workspaces: list[dict] = []
    launches: list[dict] = []
    for st in fn.body:
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and _dotted(st.value.func) == "T.func_attr":
            continue
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name) \
                and isinstance(st.value, ast.Call):
            name, call = st.targets[0].id, st.value
            func = _dotted(call.func)
            if func == "T.alloc_buffer":
                shape = _lit(call.args[0], "a workspace shape")
                kw = {k.arg: _lit(k.value, k.arg) for k in call.keywords}
                dtype = _lit(call.args[1], "a workspace dtype") if len(call.args) > 1 else kw.get("dtype", "float32")
                if kw.get("scope", "global") != "global":
                    raise BundleError(f"host code: workspace {name} in scope {kw['scope']!r}")
                names[name] = {"workspace": len(workspaces)}
                workspaces.append({"name": name, "elems": math.prod(shape), "dtype": dtype})
                continue
            if isinstance(call.func, ast.Attribute) and call.func.attr == "view" and _dotted(call.func.value) in names:
                names[name] = names[_dotted(call.func.value)]
                continue
            data = next((k.value for k in call.keywords if k.arg == "data"), None)
            if func == "T.decl_buffer" and isinstance(data, ast.Attribute) and data.attr == "data" \
                    and _dotted(data.value) in names:  # another view of a buffer's memory
                names[name] = names[_dotted(data.value)]
                continue
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and _dotted(st.value.func) == "T.call_ffi_kernel":
            call = st.value
            kw = {k.arg: k.value for k in call.keywords}
            tags = _lit(kw["launch_params"], "launch_params") if "launch_params" in kw else []
            kernel = _lit(call.args[0], "the kernel name")
            rest = call.args[1:]
            if len(rest) < len(tags):
                raise BundleError(f"host code: launch of {kernel} has fewer values than launch params")
            kargs, values = (rest[:len(rest) - len(tags)], rest[len(rest) - len(tags):]) if tags else (rest, [])
            args = []
            for a in kargs:
                if isinstance(a, ast.Attribute) and a.attr == "data" and _dotted(a.value) in names:
                    args.append(names[_dotted(a.value)])
                elif isinstance(a, ast.Constant) and isinstance(a.value, int):
                    args.append({"int32": a.value})
                else:
                    raise BundleError(f"host code: argument {ast.unparse(a)} of {kernel} is not a buffer or an integer")
            grid, block, shared = [1, 1, 1], [1, 1, 1], 0
            for tag, v in zip(tags, values):
                n = _lit(v, f"{kernel}'s {tag}")
                if tag in _LAUNCH_AXES:
                    dims, i = _LAUNCH_AXES[tag]
                    (grid if dims == "grid" else block)[i] = int(n)
                elif tag == _DYN_SHARED:
                    shared = int(n)
                else:
                    raise BundleError(f"host code: unknown launch parameter {tag!r} of {kernel}")
            launches.append({"kernel": kernel, "args": args, "grid": grid, "block": block, "shared_bytes": shared})
            continue
        raise BundleError(f"host code: cannot export the statement {ast.unparse(st)[:120]!r}")
    if not launches:
        raise BundleError("host code launches no kernel")
    return {"params": params, "workspaces": workspaces, "launches": launches}


def _candidates(db, wl: Workload, target: TargetSpec, limit: int | None) -> list[tuple[str, Any, Any]]:
    """(label, trace, schedule-or-None): the default schedule first, then unmeasured records, newest first."""
    from ..db.replay import trace_json
    from ..ops.tir import default_schedule

    sch = default_schedule(wl, target)
    out = [("default", trace_json(sch), sch)]
    recs = [r for r in db.history(wl, target) if r.status == "unmeasured"]
    recs.sort(key=lambda r: (r.created_at or datetime.min.replace(tzinfo=timezone.utc), r.id or 0), reverse=True)
    for r in recs[: None if limit is None else max(0, limit - 1)]:
        out.append((f"record {r.id}", r.trace, None))
    return out


def export_bundle(db, workloads: list[Workload], target: str | TargetSpec, out_dir: str | os.PathLike,
                  limit: int | None = None, seed: int = 0, progress=None) -> dict:
    """Write a bundle (see the module docstring); returns its manifest. ``limit`` caps the
    candidates per workload (the default schedule counts as one)."""
    from .. import ops
    from ..db.replay import module_hash, replay
    from .cuda import compile_cuda

    spec = resolve(target)
    if spec.kind != "cuda":
        raise TargetError(f"a bundle is for a CUDA target, got '{spec.name}'")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty: give a new directory for the bundle")
    (out / "kernels").mkdir(parents=True, exist_ok=True)
    arch = str(spec.tvm().attrs["arch"])
    entries, skipped, total = [], [], 0
    for wl in workloads:
        op = ops.get(wl.op)
        a = wl.args
        names = [t.name for t in op.tensors if a[t.name] is not None]
        consts = list(op.constants(a))
        for label, trace, sch in _candidates(db, wl, spec, limit):
            try:
                sch = sch if sch is not None else replay(trace, wl)
                mhash = module_hash(sch.mod)
                source, program = lower_cuda(sch.mod, spec)
                cubin = compile_cuda(source, arch)
            except (OpsearchError, ValueError) as e:
                skipped.append(f"{wl.op} {label}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}")
                continue
            if len(program["params"]) != len(names) + len(consts) + 1:
                raise BundleError(f"{wl.op}: the kernel takes {len(program['params'])} arguments, expected "
                                  f"{len(names) + len(consts) + 1} (tensors, constants, output)")
            stem = f"{wl.op}-{mhash}"
            (out / "kernels" / f"{stem}.cubin").write_bytes(cubin)
            (out / "kernels" / f"{stem}.cu").write_text(source)
            total += len(cubin) + len(source.encode())
            if total > MAX_BUNDLE_BYTES:
                raise BundleError(f"bundle over {MAX_BUNDLE_BYTES >> 20} MiB: pass a smaller --limit per workload")
            entries.append({
                "id": len(entries), "op": wl.op, "args": json.loads(json.dumps(a, default=list)),
                "label": label, "module_hash": mhash, "trace": trace,
                "args_info": [["TENSOR", t.dtype or a["dtype"], list(a[t.name])] for t in op.tensors if a[t.name] is not None],
                "cubin": f"kernels/{stem}.cubin", "source": f"kernels/{stem}.cu",
                "cubin_sha256": hashlib.sha256(cubin).hexdigest(),
                "inputs": names, "constants": consts,
                "output": {"shape": list(op.output_shape(a)), "dtype": op.output_dtype(a)},
                **program,
            })
            if progress:
                progress(entries[-1])
    if not entries:
        raise BundleError("no candidate compiled: " + ("; ".join(skipped[:3]) or "no workloads"))
    manifest = {"schema": BUNDLE_SCHEMA, "kind": BUNDLE_KIND, "target": spec.name, "arch": arch, "seed": seed,
                "created_at": datetime.now(timezone.utc).isoformat(), "candidates": entries, "skipped": skipped}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ----------------------------------------------------------------------------- reading a bundle (no TVM)
def load_bundle(path: str | Path) -> dict:
    """The bundle's manifest, checked: schema, every candidate's workload against the operator
    registry, its files and their hashes, argument references and launch sizes."""
    from .. import ops

    root = Path(path)
    mf = root / "manifest.json"
    if not mf.is_file():
        raise BundleError(f"{root} is not a bundle: no manifest.json")
    try:
        m = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mf}: not JSON ({e})") from None
    if not isinstance(m, dict) or m.get("kind") != BUNDLE_KIND:
        raise BundleError(f"{mf}: not an opsearch CUDA bundle (kind {m.get('kind') if isinstance(m, dict) else None!r})")
    if m.get("schema") != BUNDLE_SCHEMA:
        raise BundleError(f"{mf}: bundle schema {m.get('schema')!r} is not {BUNDLE_SCHEMA}")
    if not str(m.get("target", "")).startswith("cuda:") or not isinstance(m.get("candidates"), list) or not m["candidates"]:
        raise BundleError(f"{mf}: needs a cuda target and a non-empty candidate list")
    for i, c in enumerate(m["candidates"]):
        where = f"{mf}: candidate {i}"
        try:
            _check_candidate(root, c)
            wl = ops.get(c["op"]).workload(**c["args"])
        except (KeyError, TypeError) as e:
            raise BundleError(f"{where}: missing or malformed field {e}") from None
        except OpsearchError as e:
            raise BundleError(f"{where}: {e}") from None
        except BundleError as e:
            raise BundleError(f"{where}: {e}") from None
        c["_workload"] = wl
    m["_root"] = str(root)
    return m


def _check_candidate(root: Path, c: dict) -> None:
    for name in ("cubin", "source"):
        p = (root / c[name]).resolve()
        if root.resolve() not in p.parents or not p.is_file():
            raise BundleError(f"{name} file {c[name]!r} is missing or outside the bundle")
    if hashlib.sha256((root / c["cubin"]).read_bytes()).hexdigest() != c["cubin_sha256"]:
        raise BundleError(f"{c['cubin']} does not match its sha256 (altered or truncated)")
    n_params = len(c["inputs"]) + len(c["constants"]) + 1
    if len(c["params"]) != n_params:
        raise BundleError(f"{len(c['params'])} kernel parameters for {n_params} tensors")
    for w in c["workspaces"]:
        if not (isinstance(w["elems"], int) and 0 < w["elems"] <= 1 << 32):
            raise BundleError(f"workspace size {w['elems']!r} out of range")
    if not c["launches"]:
        raise BundleError("no kernel launches")
    for ln in c["launches"]:
        dims = [*ln["grid"], *ln["block"]]
        if len(dims) != 6 or not all(isinstance(d, int) and d >= 1 for d in dims) or math.prod(ln["block"]) > 1024:
            raise BundleError(f"launch of {ln['kernel']!r}: bad grid/block {ln['grid']}/{ln['block']}")
        for a in ln["args"]:
            if "param" in a and not 0 <= a["param"] < n_params or "workspace" in a and not 0 <= a["workspace"] < len(c["workspaces"]):
                raise BundleError(f"launch of {ln['kernel']!r}: argument {a} out of range")
            if not ({"param", "workspace", "int32"} & set(a)):
                raise BundleError(f"launch of {ln['kernel']!r}: unknown argument {a}")
