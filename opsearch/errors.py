"""The user-facing error types: each carries one line that names the problem."""


class OpsearchError(Exception):
    """Base of every error caused by the user's input; the CLI prints it as one line, exit 2."""


class UnknownOperatorError(OpsearchError, LookupError):
    """An operator name that is not in the registry."""


class WorkloadError(OpsearchError, ValueError):
    """A workload parameter (shape, attribute, dtype) that breaks the operator's rules."""


class TargetError(OpsearchError, ValueError):
    """A target string that is unknown or malformed."""


class InputError(OpsearchError, ValueError):
    """A tensor handed to a functional op with the wrong type, dtype or device."""


class CudaCompileError(OpsearchError, RuntimeError):
    """nvcc rejected emitted CUDA source; the message carries nvcc's output."""


class DatabaseError(OpsearchError, RuntimeError):
    """The schedule database cannot be opened, is out of date, or rejected an operation."""
