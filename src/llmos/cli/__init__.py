"""The ``llmos`` command line (Typer + Rich); see :mod:`llmos.cli.app`."""
