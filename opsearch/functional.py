"""``opsearch.functional``, the public name of :mod:`opsearch.torch_bridge.functional` (one module, two names)."""

import sys

from .torch_bridge import functional as _impl

sys.modules[__name__] = _impl
