"""Cluster and access commands: nodes, token create/list/revoke."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmos.cli._common import TokenOpt, UrlOpt, client, console, ts


def nodes(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List nodes and their devices (free or allocated)."""
    table = Table(title="nodes", title_justify="left")
    for col in ("NODE", "ALIVE", "CPUS (used/total)", "RAM GiB (used/total)", "DEVICES"):
        table.add_column(col)
    for n in client(url, token).nodes():
        by_type: dict[str, list[int]] = {}
        for d in n["devices"]:
            used_total = by_type.setdefault(d["type"], [0, 0])
            used_total[1] += 1
            used_total[0] += 1 if d["allocated_to"] else 0
        devs = ", ".join(f"{t} {u}/{tot} used" for t, (u, tot) in sorted(by_type.items())) or "-"
        table.add_row(n["id"], "yes" if n["alive"] else "[red]no[/]", f"{n['cpus_allocated']:g}/{n['cpus']:g}",
                      f"{n['memory_gib_allocated']:g}/{n['memory_gib']:g}", devs)
    console.print(table)


token_app = typer.Typer(help="Create, list and revoke API tokens (admin).", no_args_is_help=True)


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="tenant the token acts for")],
    role: Annotated[str, typer.Option("--role", "-r", help="admin | user | viewer")] = "user",
    name: Annotated[str, typer.Option("--name", help="a label")] = "",
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a token; the secret is printed once."""
    t = client(url, token).create_token(tenant, role, name)
    console.print(f"created token {t['id']} (tenant {t['tenant']}, role {t['role']})")
    console.print("secret (shown once):")
    print(t["token"])


@token_app.command("list")
def token_list(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List tokens (never their secrets)."""
    table = Table()
    for col in ("ID", "TENANT", "ROLE", "NAME", "CREATED", "REVOKED"):
        table.add_column(col)
    for t in client(url, token).tokens():
        table.add_row(t["id"], t["tenant"], t["role"], t["name"], ts(t["created_at"]), "yes" if t["revoked"] else "")
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument()], url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Revoke a token; it stops working at once."""
    t = client(url, token).revoke_token(token_id)
    console.print(f"revoked {t['id']}")


def register(app: typer.Typer) -> None:
    app.command()(nodes)
    app.add_typer(token_app, name="token")
