"""``Client``: the Python client of the llmos REST API (the CLI is built on it).

    from llmos.client import Client
    c = Client()                                   # URL/token from env or $LLMOS_HOME/config
    job = c.submit("examples/hello.yaml")          # path, YAML/JSON text, or a dict
    job = c.wait(job["id"])                        # until SUCCEEDED / FAILED / CANCELLED
    print(c.logs_text(job["id"]))

Errors come back as :class:`llmos.errors.LLMOSError` subclasses carrying the
server's message and code. Not thread-safe; make one per thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from llmos import errors as E
from llmos.client.config import resolve

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")

_BY_STATUS: dict[int, type[E.LLMOSError]] = {
    400: E.ValidationError, 401: E.AuthenticationError, 403: E.PermissionDenied, 404: E.NotFound,
    409: E.Conflict, 429: E.ResourceExhausted, 502: E.BackendError,
}


class ConnectionFailed(E.LLMOSError):
    """The control plane cannot be reached."""

    code = "connection_failed"
    http_status = 503


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout_s: float = 30.0,
                 home: Path | None = None) -> None:
        self.url, self.token = resolve(url, token, home)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    # -- plumbing -----------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.ConnectError as e:
            raise ConnectionFailed(f"cannot reach llmos at {self.url}: {e} (is `llmos up` running?)") from None
        except httpx.HTTPError as e:
            raise ConnectionFailed(f"request to {self.url}{path} failed: {e}") from None
        if r.status_code >= 400:
            raise _error_of(r)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/healthz"))

    def submit(self, spec: str | Path | dict[str, Any]) -> dict[str, Any]:
        """Submit a job: a dict, YAML/JSON text, or a path to a spec file."""
        if isinstance(spec, dict):
            return dict(self._json("POST", "/v1/jobs", json=spec))
        text = str(spec)
        if isinstance(spec, Path) or ("\n" not in text and text.endswith((".yaml", ".yml", ".json"))):
            try:
                text = Path(spec).read_text()
            except OSError as e:
                raise E.ValidationError(f"cannot read {spec}: {e.strerror or e}") from None
        return dict(self._json("POST", "/v1/jobs", content=text.encode(),
                               headers={"Content-Type": "application/yaml"}))

    def jobs(self, state: str | list[str] | None = None, *, kind: str | None = None, name: str | None = None,
             limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            # The API takes exact state names (any case is normalised here, for CLI users).
            raw = [state] if isinstance(state, str) else list(state)
            params["state"] = [",".join(p.strip().upper() for p in s.split(",") if p.strip()) for s in raw]
            params["state"] = [s for s in params["state"] if s]
        if kind:
            params["kind"] = kind
        if name:
            params["name"] = name
        return dict(self._json("GET", "/v1/jobs", params=params))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/jobs/{job_id}/events", params={"after": after}))

    def job_metrics(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/jobs/{job_id}/metrics"))

    def logs(self, job_id: str, *, task: int = 0, attempt: int | None = None, follow: bool = False) -> Iterator[str]:
        """Yield the log text of a task attempt; with ``follow`` until the job ends."""
        params: dict[str, Any] = {"task": task, "follow": str(follow).lower()}
        if attempt is not None:
            params["attempt"] = attempt
        try:
            with self._http.stream("GET", f"/v1/jobs/{job_id}/logs", params=params, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error_of(r)
                yield from r.iter_text()
        except httpx.ConnectError as e:
            raise ConnectionFailed(f"cannot reach llmos at {self.url}: {e}") from None

    def logs_text(self, job_id: str, **kw: Any) -> str:
        return "".join(self.logs(job_id, **kw))

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/nodes"))

    def metrics_text(self) -> str:
        return self._request("GET", "/metrics").text

    def create_token(self, tenant: str, role: str, name: str = "") -> dict[str, Any]:
        return dict(self._json("POST", "/v1/tokens", json={"tenant": tenant, "role": role, "name": name}))

    def tokens(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/tokens"))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return dict(self._json("DELETE", f"/v1/tokens/{token_id}"))

    def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = 0.2,
             states: tuple[str, ...] = TERMINAL_STATES) -> dict[str, Any]:
        """Poll until the job reaches one of ``states``; raises TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout_s}s")
            time.sleep(poll_s)


def _error_of(r: httpx.Response) -> E.LLMOSError:
    try:
        err = r.json()["error"]
        message, code = str(err["message"]), str(err.get("code", ""))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        message, code = f"HTTP {r.status_code}: {r.text[:500]}", ""
    cls = _BY_STATUS.get(r.status_code, E.LLMOSError)
    exc = cls(message, code=code or None)
    exc.http_status = r.status_code
    return exc
