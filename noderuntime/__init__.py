"""noderuntime: a local-first runtime for edge nodes."""

__version__ = "0.1.0"
