"""``llmos up``: the control plane, API and local backend in one foreground process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmos.cli._common import console


def task_facing_url(host: str, port: int) -> str:
    """The URL tasks use to reach the API (a wildcard bind is reached via loopback)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def up(
    host: Annotated[str | None, typer.Option("--host", help="address to bind (default 127.0.0.1, env LLMOS_HOST)")] = None,
    port: Annotated[int | None, typer.Option("--port", help="port (default 8000, env LLMOS_PORT; 0 = any free)")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="state directory (default ~/.llmos, env LLMOS_HOME)")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="local | ray (default local, env LLMOS_BACKEND)")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Ray cluster to join: HOST:PORT or auto (env LLMOS_RAY_ADDRESS; "
        "default $RAY_ADDRESS, else a private local Ray)")] = None,
) -> None:
    """Start the control plane (API + scheduler loop + local backend) in the foreground."""
    from llmos.api.app import create_app
    from llmos.api.server import ApiServer
    from llmos.client.config import write_config
    from llmos.control.plane import ControlPlane
    from llmos.settings import Settings
    from llmos.store import tokens as tokrepo

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if home is not None:
        overrides["home"] = home
    if backend is not None:
        overrides["backend"] = backend
    if ray_address is not None:
        overrides["ray_address"] = ray_address
    settings = Settings(**overrides)  # type: ignore[arg-type]
    plane = ControlPlane(settings)
    plane.lock_home()  # fail here, with a clear message, if another `llmos up` owns this home
    app = create_app(plane)
    server = ApiServer(app, settings.host, settings.port)
    url = task_facing_url(settings.host, server.port)
    plane.set_url(url)
    home_dir = Path(settings.home)
    with plane.store.session() as s:
        need_admin = tokrepo.count_admin_tokens(s) == 0
        secret = None
        if need_admin:
            _, secret = tokrepo.create_token(s, tenant="default", role="admin", name="bootstrap admin")
    cfg = write_config(home_dir, url=url, **({"token": secret} if secret else {}))
    console.print(f"llmos control plane at [bold]{url}[/] (backend {settings.backend}, "
                  f"store {plane.store.dialect}, home {home_dir})")
    if secret:
        console.print(f"created an admin token (tenant 'default'); stored in [bold]{cfg}[/]")
    console.print("use it:  llmos nodes | llmos submit examples/hello.yaml --wait | llmos jobs   (Ctrl-C stops)")
    server.server.run(sockets=[server._sock])


def register(app: typer.Typer) -> None:
    app.command()(up)
