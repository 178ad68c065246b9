"""llmos: an operating system for large-language-model workloads."""

__version__ = "0.1.0"
