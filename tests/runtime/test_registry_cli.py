"""The registry over HTTP (/v1/registry) and the CLI (llmos models / model show|import|tag), real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from llmos.api.harness import RunningPlane
from llmos.models.family import create_model_dir
from llmos.models.registry import ModelRegistry


def _llmos(cp: RunningPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmos.cli.app", *args, "--url", cp.url, "--token", cp.admin_token],
                          capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_cli_import_list_show_tag(cp: RunningPlane, cp_registry: ModelRegistry, tmp_path: Path) -> None:
    src = create_model_dir("llmos-tiny", tmp_path / "imported", seed=5)
    r = _llmos(cp, "model", "import", str(src), "--name", "imported")
    assert r.returncode == 0, r.stderr
    assert "registered imported:1 (model" in r.stdout
    r = _llmos(cp, "model", "tag", "imported:1", "production")
    assert r.returncode == 0 and "imported:production -> imported:1" in r.stdout
    r = _llmos(cp, "models")
    assert r.returncode == 0 and "imported:1" in r.stdout and "production->1" in r.stdout
    r = _llmos(cp, "model", "show", "imported:production")
    assert r.returncode == 0 and "imported:1" in r.stdout and "model.safetensors" in r.stdout
    r = _llmos(cp, "model", "show", "ghost")
    assert r.returncode != 0 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = _llmos(cp, "model", "import", str(tmp_path / "nowhere"), "--name", "x")
    assert r.returncode != 0 and "not a directory" in r.stderr


def test_registry_api_errors_are_json(cp: RunningPlane, cp_registry: ModelRegistry, tmp_path: Path) -> None:
    h = {"Authorization": f"Bearer {cp.admin_token}"}
    r = httpx.get(f"{cp.url}/v1/registry/models/tiny/versions/1", headers=h)
    assert r.status_code == 200 and r.json()["ref"] == "tiny:1" and r.json()["kind"] == "model"
    r = httpx.get(f"{cp.url}/v1/registry/models/tiny/versions/99", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.post(f"{cp.url}/v1/registry/models", headers=h, json={"path": str(tmp_path), "name": "empty"})
    assert r.status_code == 400 and "no config.json" in r.json()["error"]["message"]
    r = httpx.post(f"{cp.url}/v1/registry/models", headers=h, json={"name": "x"})
    assert r.status_code in (400, 422) and "error" in r.json()
    r = httpx.post(f"{cp.url}/v1/registry/models/tiny/tags", headers=h, json={"tag": "bad tag!"})
    assert r.status_code == 400
    r = httpx.get(f"{cp.url}/v1/registry/models")
    assert r.status_code == 401
