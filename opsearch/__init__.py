"""opsearch: operator search and autotuning for novel convolutions."""

__version__ = "0.1.0"
