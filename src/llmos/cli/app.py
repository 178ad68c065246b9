"""The ``llmos`` command line.

Registration convention (for every engineer adding CLI commands)
----------------------------------------------------------------
* A feature module exposes ``register(app: typer.Typer) -> None`` that adds
  its commands (``app.command()(fn)``) or a sub-app
  (``app.add_typer(sub, name="models")``).
* It is registered by adding ONE line, its module path, to
  :data:`FEATURE_COMMANDS` below; there is no discovery.
* Keep module import light (typer, rich, stdlib): import httpx, torch,
  transformers... inside the command functions, so ``llmos --help`` stays
  well under a second.
* Talk to the control plane through :class:`llmos.client.Client` with the
  shared ``--url`` / ``--token`` options of :mod:`llmos.cli._common`
  (``UrlOpt``, ``TokenOpt``, ``client(url, token)``).
* Raise :class:`llmos.errors.LLMOSError` for user-facing faults: :func:`main`
  prints ``error: <message>`` and exits 1, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from llmos.errors import LLMOSError

# The one explicit list of command modules. Add your module here (one line).
FEATURE_COMMANDS: tuple[str, ...] = (
    "llmos.cli.up",
    "llmos.cli.jobs",
    "llmos.cli.admin",
    "llmos.cli.serve",
    "llmos.cli.models",
    "llmos.cli.sim",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="llmos",
        help="llmos: an operating system for LLM workloads.",
        epilog=(
            "Start here: [bold]llmos up[/] in one terminal, then "
            "[bold]llmos submit examples/hello.yaml --wait[/], [bold]llmos jobs[/], "
            "[bold]llmos logs JOB_ID[/]. The URL and token come from --url/--token, "
            "LLMOS_URL/LLMOS_TOKEN or $LLMOS_HOME/config (written by the first llmos up). "
            "Every command has its own --help."
        ),
        rich_markup_mode="rich",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module in FEATURE_COMMANDS:
        importlib.import_module(module).register(app)
    return app


app = build_app()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, turning llmos faults into one-line errors."""
    from rich.markup import escape

    from llmos.cli._common import err_console

    try:
        app(args=argv, prog_name="llmos")
    except LLMOSError as e:
        # escape: messages quote user input and hints like `pip install 'llmos[ray]'`,
        # whose brackets rich would otherwise eat as markup.
        err_console.print(f"[red]error:[/] {escape(e.message)}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
