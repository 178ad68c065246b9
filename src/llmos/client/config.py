"""``$LLMOS_HOME/config``: where ``llmos up`` leaves the URL and admin token for the CLI.

A small YAML mapping (``url``, ``token``), readable only by its owner.
Resolution order everywhere: explicit argument / flag, then ``LLMOS_URL`` /
``LLMOS_TOKEN``, then this file, then ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DEFAULT_URL = "http://127.0.0.1:8000"


def llmos_home() -> Path:
    return Path(os.environ.get("LLMOS_HOME") or Path.home() / ".llmos")


def config_path(home: Path | None = None) -> Path:
    return (home or llmos_home()) / "config"


def read_config(home: Path | None = None) -> dict[str, Any]:
    path = config_path(home)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def write_config(home: Path, **values: str) -> Path:
    """Merge ``values`` into the config file (mode 0600) and return its path."""
    path = config_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**read_config(home), **values}
    tmp = path.with_name("config.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=True)
    os.replace(tmp, path)
    return path


def resolve(url: str | None = None, token: str | None = None, home: Path | None = None) -> tuple[str, str | None]:
    cfg = read_config(home)
    url = url or os.environ.get("LLMOS_URL") or cfg.get("url") or DEFAULT_URL
    token = token or os.environ.get("LLMOS_TOKEN") or cfg.get("token")
    return str(url).rstrip("/"), (str(token) if token else None)
