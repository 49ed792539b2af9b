"""Helpers shared by the command modules."""

from __future__ import annotations

import json
from typing import Any

from ..errors import WorkloadError


def parse_args_json(text: str) -> dict[str, Any]:
    """The ``--args`` JSON object (tensor shapes and attributes); one-line errors."""
    try:
        args = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"--args is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(args, dict):
        raise WorkloadError('--args must be a JSON object, e.g. \'{"x": [1, 8, 32], "weight": [8, 8, 3]}\'')
    return args
