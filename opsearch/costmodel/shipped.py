"""The cost model shipped with opsearch: ``schedules/costmodel-<kind>.json``.

A first tuning run on a new machine has no records to pretrain on, so its first batch would be
picked at random. The shipped model, trained on a tuning corpus of the example workloads, ranks
that batch instead: the tuner starts from it when pretraining finds no measured record of the
target kind in the user's database (``XGBCostModel.set_base``), and every later fit on the run's
own measurements adds trees on top of it.

The file is XGBoost's own JSON (never a pickle), written by ``opsearch model train --out FILE``
with what it was trained on in its attributes (``feature_version``, ``records``, ``workloads``,
``targets``). A file that XGBoost cannot read, or whose feature layout is not this version's
(``FEATURE_VERSION``, ``N_FEATURES``), is skipped with a warning: the run then starts at random.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from .features import FEATURE_VERSION, N_FEATURES

log = logging.getLogger(__name__)


def shipped_path(kind: str) -> Path | None:
    """Where the shipped model of target kind ``kind`` (``llvm``, ``cuda``) lives, or None."""
    from ..db.shipped import schedules_dir

    d = schedules_dir()
    return None if d is None else d / f"costmodel-{kind}.json"


def read_model(path: Path):
    """The booster stored at ``path`` if it is usable by this version, else None (with a warning)."""
    import xgboost as xgb

    try:
        booster = xgb.Booster()
        booster.load_model(str(path))
    except xgb.core.XGBoostError as e:
        log.warning("cost model %s not used: XGBoost cannot read it (%s)", path.name, str(e).strip().splitlines()[0])
        return None
    version = booster.attr("feature_version")
    if booster.num_features() != N_FEATURES or version != str(FEATURE_VERSION):
        log.warning("cost model %s not used: it was trained on features of version %s with %d columns, this "
                    "opsearch extracts version %d with %d", path.name, version, booster.num_features(),
                    FEATURE_VERSION, N_FEATURES)
        return None
    return booster


@functools.lru_cache(maxsize=4)
def shipped_model(kind: str):
    """The shipped model of target kind ``kind`` (read once per process), or None."""
    path = shipped_path(kind)
    if path is None or not path.is_file():
        return None
    return read_model(path)


def write_model(booster, path: Path | str, **attrs) -> None:
    """Save ``booster`` as XGBoost JSON at ``path`` (atomically) with ``attrs`` and the feature
    version. Raises OSError when the file cannot be written."""
    from ..runtime.cache import atomic_write_bytes

    booster.set_attr(**{"feature_version": str(FEATURE_VERSION), **{k: str(v) for k, v in attrs.items()}})
    atomic_write_bytes(Path(path), bytes(booster.save_raw("json")))
