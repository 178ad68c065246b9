"""Shared CLI plumbing: options for address/token, the client, console output."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from llmos.client import Client

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

UrlOpt = Annotated[str | None, typer.Option("--url", help="control plane URL (env LLMOS_URL, else $LLMOS_HOME/config)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token (env LLMOS_TOKEN, else $LLMOS_HOME/config)")]

STATE_STYLE = {
    "PENDING": "yellow", "RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "magenta",
    "STARTING": "yellow", "PREEMPTED": "magenta", "LOST": "red",
}


def client(url: str | None, token: str | None) -> Client:
    from llmos.client import Client  # httpx is imported only by commands that talk to the API

    return Client(url, token)


def styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def ts(t: float | None) -> str:
    if not t:
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def ago(t: float | None, now: float) -> str:
    if not t:
        return "-"
    s = max(0.0, now - t)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"
