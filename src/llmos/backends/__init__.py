"""Execution backends: where tasks actually run (local processes, Ray)."""
