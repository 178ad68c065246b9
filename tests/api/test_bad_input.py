"""Every bad input gets a 4xx JSON error ``{"error": {message, type, code}}`` and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from llmos.api.harness import RunningPlane
from llmos.store import jobs as repo
from llmos.store import tokens as tokrepo
from llmos.store.tables import EventRow, TokenRow


def _state(cp: RunningPlane) -> tuple[int, int, int]:
    with cp.plane.store.session() as s:
        jobs = repo.list_jobs(s, tenant=None)[1]
        tokens = s.query(TokenRow).count()
        events = s.query(EventRow).count()
    return jobs, tokens, events


def _check(r: httpx.Response, status: int, code: str, contains: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"} and err["code"] == code
    assert contains.lower() in err["message"].lower(), err["message"]
    return dict(err)


def _post(cp: RunningPlane, body: str | bytes, ctype: str = "application/yaml", token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {token or cp.admin_token}"}
    return httpx.post(f"{cp.url}/v1/jobs", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "ctype", "contains"),
    [
        ("kind: command\nname: [unclosed", "application/yaml", "malformed YAML"),
        ('{"kind": "command", "name": ', "application/json", "malformed JSON"),
        ("kind: teleport\nname: x\n", "application/yaml", "unknown kind"),
        ("name: x\ncommand: [echo]\n", "application/yaml", "missing 'kind'"),
        ("- just\n- a list\n", "application/yaml", "must be a mapping"),
        ("", "application/yaml", "empty"),
        ("kind: command\nname: x\ncommand: [echo]\nresources: {cpus: -1}\n", "application/yaml", "resources.cpus"),
        ("kind: command\nname: x\ncommand: [echo]\nresources: {devices: -2}\n", "application/yaml", "resources.devices"),
        ("kind: command\nname: x\ncommand: [echo]\nresources: {memory_gib: 0}\n", "application/yaml", "memory_gib"),
        ("kind: command\nname: x\ncommand: [echo]\nresources: {devices: 1, device_types: [TPU9]}\n",
         "application/yaml", "unknown device type"),
        ("kind: command\nname: x\ncommand: [echo]\nresources: {devices: 1, device_types: [T4], min_device_memory_gib: 500}\n",
         "application/yaml", "exceeds every allowed device type"),
        # Valid specs, impossible on this cluster (a CPU-only node with 4 CPUs).
        ("kind: command\nname: x\ncommand: [echo]\nresources: {cpus: 64}\n", "application/yaml", "impossible"),
        ("kind: command\nname: x\ncommand: [echo]\nresources: {devices: 2, device_types: [H100]}\n",
         "application/yaml", "impossible"),
        ("kind: command\nname: x\ncommand: [echo]\ntasks: 9\nresources: {cpus: 1}\n", "application/yaml", "impossible"),
        ("kind: command\nname: x\ncommand: [echo]\nbogus_field: 1\n", "application/yaml", "bogus_field"),
    ],
)
def test_bad_spec_is_400_and_changes_nothing(shared_cp: RunningPlane, body: str, ctype: str, contains: str) -> None:
    before = _state(shared_cp)
    _check(_post(shared_cp, body, ctype), 400, "invalid_request", contains)
    assert _state(shared_cp) == before


def test_unknown_job_id_is_404(shared_cp: RunningPlane) -> None:
    before = _state(shared_cp)
    h = {"Authorization": f"Bearer {shared_cp.admin_token}"}
    for method, path in [("GET", "/v1/jobs/job-nope"), ("POST", "/v1/jobs/job-nope/cancel"),
                         ("GET", "/v1/jobs/job-nope/logs"), ("GET", "/v1/jobs/job-nope/events")]:
        _check(httpx.request(method, shared_cp.url + path, headers=h), 404, "not_found", "job-nope")
    _check(httpx.get(shared_cp.url + "/v1/nowhere", headers=h), 404, "not_found")
    assert _state(shared_cp) == before


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer llmos_wrong", "Basic abc", "llmos_no_scheme"])
def test_missing_or_wrong_token_is_401(shared_cp: RunningPlane, auth: str | None) -> None:
    before = _state(shared_cp)
    headers = {"Content-Type": "application/yaml"}
    if auth is not None:
        headers["Authorization"] = auth
    r = httpx.post(f"{shared_cp.url}/v1/jobs", content=b"kind: command\nname: x\ncommand: [echo]\n", headers=headers)
    _check(r, 401, "unauthenticated")
    assert r.headers.get("www-authenticate") == "Bearer"
    for path in ("/v1/jobs", "/v1/nodes", "/metrics", "/v1/tokens"):
        _check(httpx.get(shared_cp.url + path, headers=headers), 401, "unauthenticated")
    assert _state(shared_cp) == before
    assert httpx.get(shared_cp.url + "/healthz").status_code == 200


def test_revoked_token_is_401(shared_cp: RunningPlane) -> None:
    secret = shared_cp.token("default", "user")
    with shared_cp.plane.store.session() as s:
        row = tokrepo.resolve_token(s, secret)
        assert row is not None
        tokrepo.revoke_token(s, row.id)
    before = _state(shared_cp)
    _check(_post(shared_cp, "kind: command\nname: x\ncommand: [echo]\n", token=secret), 401, "unauthenticated")
    assert _state(shared_cp) == before


def test_another_tenants_job_is_404_and_untouched(shared_cp: RunningPlane) -> None:
    alice = shared_cp.client(shared_cp.token("alice", "user"))
    bob_token = shared_cp.token("bob", "user")
    job = alice.submit({"kind": "command", "name": "secret", "command": ["sleep", "30"]})
    alice.wait(job["id"], states=("RUNNING",), timeout_s=30)
    before = _state(shared_cp)
    h = {"Authorization": f"Bearer {bob_token}"}
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/logs"), ("GET", "/events"), ("GET", "/metrics")]:
        _check(httpx.request(method, f"{shared_cp.url}/v1/jobs/{job['id']}{path}", headers=h), 404, "not_found")
    listing = httpx.get(f"{shared_cp.url}/v1/jobs", headers=h).json()
    assert listing["total"] == 0 and listing["items"] == []
    assert _state(shared_cp) == before
    assert alice.job(job["id"])["state"] == "RUNNING" and not alice.job(job["id"])["cancel_requested"]
    assert alice.cancel(job["id"])["state"] == "CANCELLED"


def test_roles_are_enforced(shared_cp: RunningPlane) -> None:
    viewer = shared_cp.token("default", "viewer")
    user = shared_cp.token("default", "user")
    before = _state(shared_cp)
    _check(_post(shared_cp, "kind: command\nname: x\ncommand: [echo]\n", token=viewer), 403, "permission_denied")
    r = httpx.post(f"{shared_cp.url}/v1/tokens", json={"tenant": "x", "role": "admin"},
                   headers={"Authorization": f"Bearer {user}"})
    _check(r, 403, "permission_denied")
    assert _state(shared_cp) == before
    assert httpx.get(f"{shared_cp.url}/v1/jobs", headers={"Authorization": f"Bearer {viewer}"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "contains"),
    [({"state": "SLEEPING"}, "unknown state"), ({"limit": "0"}, "limit"), ({"offset": "-1"}, "offset"),
     ({"limit": "abc"}, "limit")],
)
def test_bad_list_parameters_are_400(shared_cp: RunningPlane, params: dict[str, str], contains: str) -> None:
    r = httpx.get(f"{shared_cp.url}/v1/jobs", params=params, headers={"Authorization": f"Bearer {shared_cp.admin_token}"})
    _check(r, 400, "invalid_request", contains)


@pytest.mark.parametrize(
    "body",
    [{"tenant": "acme", "role": "root"}, {"tenant": "", "role": "user"}, {"tenant": "a b", "role": "user"},
     {"role": "user"}, {"tenant": "acme", "role": "user", "extra": 1}],
)
def test_bad_token_requests_are_400(shared_cp: RunningPlane, body: dict[str, Any]) -> None:
    before = _state(shared_cp)
    r = httpx.post(f"{shared_cp.url}/v1/tokens", json=body, headers={"Authorization": f"Bearer {shared_cp.admin_token}"})
    _check(r, 400, "invalid_request")
    assert _state(shared_cp) == before


def test_task_report_needs_the_tasks_own_token(shared_cp: RunningPlane) -> None:
    before = _state(shared_cp)
    r = httpx.post(f"{shared_cp.url}/v1/tasks/job-x.0.1/report", json={"heartbeat": True},
                   headers={"Authorization": f"Bearer {shared_cp.admin_token}"})
    _check(r, 403, "permission_denied")
    assert _state(shared_cp) == before
