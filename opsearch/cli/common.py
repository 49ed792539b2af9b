"""Helpers shared by the command modules."""

from __future__ import annotations

import json
from typing import Any

from ..errors import OpsearchError, WorkloadError


def parse_args_json(text: str) -> dict[str, Any]:
    """The ``--args`` JSON object (tensor shapes and attributes); one-line errors."""
    try:
        args = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"--args is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(args, dict):
        raise WorkloadError('--args must be a JSON object, e.g. \'{"x": [1, 8, 32], "weight": [8, 8, 3]}\'')
    return args


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``600``, ``90s``, ``10m``, ``1.5h`` -> seconds; one-line error otherwise."""
    t = str(text).strip().lower()
    unit = _UNITS.get(t[-1:], None)
    number = t[:-1] if unit is not None else t
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise OpsearchError(f"--time must be a duration like 600, 90s, 10m or 1h, got '{text}'") from None
    if not seconds > 0 or seconds == float("inf"):
        raise OpsearchError(f"--time must be positive, got '{text}'")
    return seconds
