"""On-disk cache of compiled kernels, keyed by a content hash of everything that shapes the code.

A compiled kernel is a shared library (``<hash>.so``) plus a JSON sidecar (``<hash>.json``)
holding the hash's inputs and the sha256 of the library (a CUDA kernel: ``<hash>.cubin``, its
sidecar also holding the launch program: ``opsearch.runtime.cuda_kernel``). The hash covers the workload key, the
schedule as text (the scheduled IRModule's TVMScript, or a MetaSchedule trace when the caller
has one), the target's name and configuration, the TVM version and the opsearch version, so a
change to any of them compiles afresh instead of loading stale code.

Writes are atomic (temporary names in the cache directory, then ``os.replace``; the sidecar
goes last, so a library without a sidecar is never trusted). On load the library's sha256 is
checked against the sidecar before it is opened: a truncated or corrupted file is removed and
rebuilt. Libraries come only from this directory, written by this process or another opsearch
process; nothing executable is ever read from the schedule database.

Building a schedule only to hash its text costs more than loading the library (tens of ms in
a fresh process), so a caller whose schedule is a pure function of the workload, the target and
the code (the default schedule) passes ``memo``: a small ``<key>.memo`` file then maps the hash
of (memo name, workload, target and its configuration, TVM and opsearch versions, and a
fingerprint of the sizes and mtimes of the source files that build schedules) to the library's
content hash, and a later process loads the library without building the schedule. An edit to
those sources changes the fingerprint; a memo that is unreadable, malformed or names a library
whose sidecar is for another workload or target is ignored and rewritten.

The cache also keeps small ``<key>.choice`` files: which of two schedules of a workload ran
faster on this machine (:func:`load_choice`; ``opsearch.runtime.loading`` times a schedule that was
never measured here against the default once, and keeps the answer).

Directory: ``$OPSEARCH_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("opsearch")/kernels``.
Clear it with ``opsearch.runtime.cache.clear()`` or by deleting the directory.

>>> mod = cached_module(wl, spec, lambda: default_schedule(wl, spec))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ops.spec import Workload
from ..targets import TargetSpec, resolve

log = logging.getLogger(__name__)

FORMAT = 1  # sidecar layout version; part of the hash


@dataclass
class Stats:
    """Counters for this process: disk hits (``memo_hits`` of them found through a memo, without
    building the schedule), compiles, and corrupted entries rebuilt."""

    hits: int = 0
    compiles: int = 0
    corrupted: int = 0
    memo_hits: int = 0


stats = Stats()


def cache_dir() -> Path:
    """The kernel cache directory (created on demand)."""
    env = os.environ.get("OPSEARCH_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("opsearch")) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def clear() -> int:
    """Delete every cached kernel; returns how many libraries (and cubins) were removed."""
    n = 0
    for p in cache_dir().iterdir():
        if p.suffix in (".so", ".cubin", ".json", ".tmp", ".memo", ".choice"):
            n += p.suffix in (".so", ".cubin")
            p.unlink(missing_ok=True)
    return n


def key_inputs(wl: Workload, target: TargetSpec, schedule_text: str) -> dict[str, str]:
    """Everything the hash covers, as strings (also written to the sidecar, minus the schedule)."""
    import tvm

    from .. import __version__

    return {
        "format": str(FORMAT),
        "workload": wl.key(),
        "schedule_sha256": hashlib.sha256(schedule_text.encode()).hexdigest(),
        "target": target.name,
        "target_config": target.config_json,
        "tvm": tvm.__version__,
        "opsearch": __version__,
    }


def content_hash(inputs: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_load_hooks: list = []  # called with the path of every kernel library this process loads


def on_library_load(hook) -> None:
    """Call ``hook(path)`` after each kernel library is loaded from the cache (e.g. the torch
    bridge points its parallel loops at PyTorch's thread pool)."""
    if hook not in _load_hooks:
        _load_hooks.append(hook)


def _load(lib: Path, meta: Path, digest: str):
    """The runtime module at ``lib`` if its sidecar vouches for it, else None (and clean up)."""
    import tvm

    if not (lib.exists() and meta.exists()):
        return None
    try:
        side = json.loads(meta.read_text())
        ok = side.get("hash") == digest and side.get("so_sha256") == _file_sha256(lib)
    except (OSError, ValueError):
        ok = False
    if not ok:
        stats.corrupted += 1
        log.warning("opsearch cache: %s is corrupted or incomplete; rebuilding", lib.name)
        lib.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        return None
    try:
        module = tvm.runtime.load_module(str(lib))
    except Exception as e:  # e.g. a library built against another TVM runtime
        log.warning("opsearch cache: cannot load %s (%s); rebuilding", lib.name, e)
        return None
    for hook in _load_hooks:
        try:
            hook(str(lib))
        except Exception as e:  # noqa: BLE001 - a hook must never cost the kernel
            log.warning("opsearch cache: load hook %s failed for %s: %s", getattr(hook, "__name__", hook), lib.name, e)
    return module


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` under a temporary name in its directory, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _store(module, lib: Path, meta: Path, digest: str, inputs: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{digest}.", suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        module.export_library(tmp)
        so_sha = _file_sha256(Path(tmp))
        os.replace(tmp, lib)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_text(meta, json.dumps({"hash": digest, "so_sha256": so_sha, **inputs}, indent=1, sort_keys=True))


def _as_module(schedule: Any):
    """An IRModule from a ``Schedule``, an ``IRModule`` or a zero-argument callable of either."""
    if callable(schedule) and not hasattr(schedule, "mod") and not hasattr(schedule, "functions"):
        schedule = schedule()
    return schedule.mod if hasattr(schedule, "mod") else schedule


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """sha256 over the path, size and modification time (ns) of every source file that builds a
    schedule (``opsearch/ops/``, ``runtime/kernels.py``, ``targets.py``, ``runtime/cache.py``),
    once per process: an edit, reinstall or checkout of any of them changes it."""
    root = Path(__file__).resolve().parent.parent
    files = [*root.joinpath("ops").rglob("*.py"),
             *(root / n for n in ("runtime/kernels.py", "targets.py", "runtime/cache.py"))]
    h = hashlib.sha256()
    for p in sorted(files):
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _memo_path(root: Path, memo: str, wl: Workload, target: TargetSpec) -> Path:
    import tvm

    from .. import __version__

    key = content_hash({"format": str(FORMAT), "memo": memo, "workload": wl.key(), "target": target.name,
                        "target_config": target.config_json, "tvm": tvm.__version__, "opsearch": __version__,
                        "sources": source_fingerprint()})
    return root / f"{key}.memo"


def memo_path(memo: str, wl: Workload, target: TargetSpec) -> Path:
    """Where the memo named ``memo`` of ``wl`` on ``target`` lives (see the module docstring)."""
    return _memo_path(cache_dir(), memo, wl, target)


def read_memo(path: Path, wl: Workload, target: TargetSpec) -> str | None:
    """The content hash a memo points to, or None (missing, unreadable, or its sidecar is not for
    this workload and target). The caller still checks the kernel file against the sidecar."""
    try:
        digest = json.loads(path.read_text())["hash"]
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise ValueError("malformed hash")
        side = json.loads((path.parent / f"{digest}.json").read_text())
        if side.get("workload") != wl.key() or side.get("target") != target.name:
            raise ValueError("memo names another workload's library")
    except (OSError, ValueError, KeyError, TypeError) as e:
        if path.exists():
            log.warning("opsearch cache: ignoring %s (%s)", path.name, e)
        return None
    return digest


def write_memo(path: Path, digest: str) -> None:
    atomic_write_text(path, json.dumps({"hash": digest}))


def _load_memo(path: Path, wl: Workload, target: TargetSpec):
    """The module a memo points to, or None (see :func:`read_memo`)."""
    digest = read_memo(path, wl, target)
    return None if digest is None else _load(path.parent / f"{digest}.so", path.parent / f"{digest}.json", digest)


def _choice_path(wl: Workload, target: TargetSpec, schedule_text: str) -> Path:
    key = content_hash({**key_inputs(wl, target, schedule_text), "choice": "against-default",
                        "sources": source_fingerprint()})
    return cache_dir() / f"{key}.choice"


def load_choice(wl: Workload, target: TargetSpec | str, schedule_text: str) -> dict | None:
    """The stored outcome of timing a schedule (given as text, e.g. a trace's JSON) against the
    default schedule of ``wl`` on this target (:func:`store_choice`), or None. The key covers
    what the default depends on too (opsearch's schedule sources), so a new default is timed
    again."""
    path = _choice_path(wl, resolve(target), schedule_text)
    try:
        d = json.loads(path.read_text())
        timed = all(isinstance(d.get(k), (int, float)) for k in ("record_us", "default_us"))
        if d.get("use") not in ("record", "default") or not timed:
            raise ValueError("malformed choice")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        log.warning("opsearch cache: ignoring %s (%s)", path.name, e)
        return None
    return d


def store_choice(wl: Workload, target: TargetSpec | str, schedule_text: str, choice: dict) -> None:
    atomic_write_text(_choice_path(wl, resolve(target), schedule_text), json.dumps(choice, sort_keys=True))


def cached_module(wl: Workload, target: TargetSpec | str, schedule: Any, key_text: str | None = None,
                  memo: str | None = None):
    """The compiled TVM runtime module for ``wl`` scheduled by ``schedule``, from the disk cache
    when present, else compiled and stored.

    ``schedule``: a ``tvm.s_tir.Schedule``, an ``IRModule`` or a zero-argument callable returning
    one. ``key_text``: the schedule as text for the hash (e.g. a MetaSchedule trace as JSON);
    None uses the scheduled module's TVMScript. ``memo``: a name for a schedule that depends only
    on the workload, target and opsearch's code (e.g. "default"); see the module docstring.
    CPU (LLVM) targets only (CUDA kernels: ``opsearch.runtime.cuda_kernel``, same memos).
    """
    import tvm

    target = resolve(target)
    root = cache_dir()
    memo_path = _memo_path(root, memo, wl, target) if memo else None
    if memo_path is not None:
        module = _load_memo(memo_path, wl, target)
        if module is not None:
            stats.hits += 1
            stats.memo_hits += 1
            return module
    mod = _as_module(schedule)
    inputs = key_inputs(wl, target, key_text if key_text is not None else mod.script())
    digest = content_hash(inputs)
    lib, meta = root / f"{digest}.so", root / f"{digest}.json"
    module = _load(lib, meta, digest)
    if module is not None:
        stats.hits += 1
        if memo_path is not None:
            write_memo(memo_path, digest)
        return module
    stats.compiles += 1
    log.info("opsearch cache: compiling %s for %s", wl.short() or wl.op, target.name)
    module = tvm.compile(mod, target=target.tvm()).mod
    _store(module, lib, meta, digest, inputs)
    module = _load(lib, meta, digest) or module  # served from the library file, as later processes are
    if memo_path is not None:
        write_memo(memo_path, digest)
    return module
