"""Environment switches that turn opsearch behaviours off (``OPSEARCH_NATIVE``, ``OPSEARCH_CHECK``)."""

from __future__ import annotations

import os


def env_flag(name: str, default: bool = True) -> bool:
    """``$name`` as a switch: unset gives ``default``; 0/false/no/off (any case) give False."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")
