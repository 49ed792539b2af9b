"""``opsearch.nn``, the public name of :mod:`opsearch.torch_bridge.nn` (one module, two names)."""

import sys

from .torch_bridge import nn as _impl

sys.modules[__name__] = _impl
