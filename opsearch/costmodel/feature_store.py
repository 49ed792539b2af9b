"""On-disk store of the feature rows of database records, so pretraining does not replay them again.

Pretraining the cost model (``dataset.pretrain``) replays every measured record of the target kind
to a schedule and lowers it to extract its features: about 25 ms a record on a 2-core VM, so a
database of 2,000 records adds 40-50 s to the start of every tuning run. A record's features are
a pure function of its trace, its workload, the target, opsearch's operator definitions, TVM and
the feature layout, so they are computed once and kept here, one file per (workload, target):

* the file name is a hash of the workload key, the target name and configuration, the
  ``FEATURE_VERSION`` of the layout, the TVM and opsearch versions and the fingerprint of the
  sources that build schedules (``opsearch.runtime.cache.source_fingerprint``): a change to any of
  them starts a new file;
* inside, an ``.npz`` of two arrays: ``keys`` (sha256 of each record's trace) and ``rows``
  (float32, ``[n, N_FEATURES]``), read with ``allow_pickle=False``; written atomically. A file that
  cannot be read or has the wrong shape is ignored (and rewritten).

Directory: ``features/`` under the kernel cache (``opsearch.runtime.cache.cache_dir``). The
database itself only ever holds traces and measurements; this is a local cache, safe to delete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from ..ops.spec import Workload
from .features import FEATURE_VERSION, N_FEATURES

log = logging.getLogger(__name__)


def trace_key(trace) -> str:
    """The key of a record's features: sha256 of its trace as canonical JSON."""
    return hashlib.sha256(json.dumps(trace, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def store_dir() -> Path:
    from ..runtime.cache import cache_dir

    path = cache_dir() / "features"
    path.mkdir(parents=True, exist_ok=True)
    return path


def group_path(wl: Workload, target: str) -> Path:
    """The file of ``wl``'s records on ``target`` (a canonical target name)."""
    import tvm

    from .. import __version__
    from ..runtime.cache import content_hash, source_fingerprint
    from ..targets import resolve

    spec = resolve(target)
    key = content_hash({"workload": wl.key(), "target": spec.name, "target_config": spec.config_json,
                        "feature_version": str(FEATURE_VERSION), "tvm": tvm.__version__, "opsearch": __version__,
                        "sources": source_fingerprint()})
    return store_dir() / f"{key}.npz"


def load(path: Path) -> dict[str, np.ndarray]:
    """``{trace key: feature row}`` stored at ``path`` ({} when missing or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, rows = z["keys"], z["rows"]
        if rows.ndim != 2 or rows.shape[1] != N_FEATURES or len(keys) != len(rows) or rows.dtype != np.float32:
            raise ValueError(f"rows of shape {rows.shape} ({rows.dtype}) for {len(keys)} keys")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError) as e:
        log.warning("opsearch feature store: ignoring %s (%s)", path.name, e)
        return {}
    return dict(zip(keys.tolist(), rows))


def save(path: Path, rows: dict[str, np.ndarray]) -> None:
    """Write ``{trace key: feature row}`` to ``path`` atomically."""
    from ..runtime.cache import atomic_write_bytes

    buf = io.BytesIO()
    keys = list(rows)
    np.savez(buf, keys=np.array(keys, dtype="<U64"),
             rows=np.asarray([rows[k] for k in keys], dtype=np.float32).reshape(len(keys), N_FEATURES))
    atomic_write_bytes(path, buf.getvalue())
