"""Operator library: ``names()``, ``get(name)`` and the declarations of every operator family."""

from . import attention, deformable, dilated, dynamic, fft, shift_add, spectral  # noqa: F401  (registration)
from .registry import all_ops, get, names, sample_inputs
from .spec import Attr, OpSpec, TensorParam, Workload

__all__ = ["names", "get", "all_ops", "sample_inputs", "OpSpec", "TensorParam", "Attr", "Workload"]
