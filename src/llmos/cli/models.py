"""Model registry commands: ``llmos models``, ``llmos model show|import|tag|untag``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llmos.cli._common import TokenOpt, UrlOpt, client, console, ts
from llmos.errors import ValidationError

model_app = typer.Typer(help="Inspect and manage registered models.", no_args_is_help=True)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _split(ref: str) -> tuple[str, str]:
    name, _, sel = ref.partition(":")
    if not name:
        raise ValidationError(f"malformed model reference {ref!r}; expected NAME[:VERSION|TAG]")
    return name, sel or "latest"


def models(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List registered models (latest version, tags)."""
    rows = client(url, token)._json("GET", "/v1/registry/models")
    table = Table(title=f"models ({len(rows)})", title_justify="left")
    for col in ("NAME", "VERSIONS", "LATEST", "KIND", "SIZE", "TAGS", "CREATED"):
        table.add_column(col)
    for m in rows:
        latest = m["latest"]
        tags = ", ".join(f"{t}->{v}" for t, v in sorted(m["tags"].items())) or "-"
        table.add_row(m["name"], str(m["versions"]), latest["ref"], latest["kind"], _size(latest["size_bytes"]),
                      tags, ts(latest["created_at"]))
    console.print(table)


@model_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME[:VERSION|TAG]")],
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one version: files, lineage, metrics, tags."""
    name, sel = _split(ref)
    v: dict[str, Any] = client(url, token)._json("GET", f"/v1/registry/models/{name}/versions/{sel}")
    if as_json:
        console.print_json(json.dumps(v))
        return
    console.print(f"[bold]{v['ref']}[/] ({v['kind']}, {_size(v['size_bytes'])}) created {ts(v['created_at'])}")
    for key in ("base", "parent", "job_id", "dataset"):
        if v.get(key):
            console.print(f"  {key}: {v[key]}")
    if v.get("lineage"):
        console.print(f"  lineage: {' <- '.join([v['ref'], *v['lineage']])}")
    if v.get("tags"):
        console.print(f"  tags: {', '.join(v['tags'])}")
    for k, val in sorted((v.get("metrics") or {}).items()):
        console.print(f"  metric {k}: {val:.4g}" if isinstance(val, float) else f"  metric {k}: {val}")
    console.print(f"  files: {', '.join(v['files'])}")


@model_app.command("import")
def import_(
    directory: Annotated[Path, typer.Argument(help="Hugging Face (safetensors) or PEFT adapter directory")],
    name: Annotated[str, typer.Option("--name", "-n", help="register as NAME:<next version>")],
    base: Annotated[str | None, typer.Option("--base", help="for an adapter: its base model version")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import a local model directory into the registry."""
    if not directory.is_dir():
        raise ValidationError(f"not a directory: {directory}")
    body = {"path": str(directory.resolve()), "name": name, "base": base, "description": description}
    v = client(url, token)._json("POST", "/v1/registry/models", json=body)
    console.print(f"registered [bold]{v['ref']}[/] ({v['kind']}, {_size(v['size_bytes'])})")


@model_app.command("tag")
def tag(
    ref: Annotated[str, typer.Argument(help="NAME[:VERSION] to tag")],
    tag_name: Annotated[str, typer.Argument(metavar="TAG", help="e.g. production")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Point TAG of the model at a version (moves it if already set)."""
    name, sel = _split(ref)
    v = client(url, token)._json("POST", f"/v1/registry/models/{name}/tags", json={"tag": tag_name, "version": sel})
    console.print(f"{name}:{tag_name} -> {v['ref']}")


@model_app.command("untag")
def untag(
    name: Annotated[str, typer.Argument()],
    tag_name: Annotated[str, typer.Argument(metavar="TAG")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove a tag."""
    client(url, token)._json("DELETE", f"/v1/registry/models/{name}/tags/{tag_name}")
    console.print(f"removed tag {tag_name} of {name}")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.add_typer(model_app, name="model")
