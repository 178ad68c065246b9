"""One ``Settings`` object for llmos; read only by entry points.

Every value can be set from the environment with the ``LLMOS_`` prefix
(``LLMOS_HOME``, ``LLMOS_DATABASE_URL``, ...). Units are in the names.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOS_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".llmos")
    database_url: str | None = None  # default: sqlite under home
    host: str = "127.0.0.1"
    port: int = 8000
    url: str | None = None  # where clients find the control plane
    token: str | None = None
    backend: str = "local"  # local | ray
    ray_address: str | None = None
    scheduler_profile: str = "default"
    cpu_devices: int | None = None  # how many `cpu` devices the local node advertises
    loop_interval_s: float = 0.2
    heartbeat_timeout_s: float = 60.0
    stop_grace_s: float = 10.0
    # Local node overrides (default: what psutil sees). Tests use them to force queueing.
    node_id: str | None = None
    node_cpus: float | None = None
    node_memory_gib: float | None = None
    inventory_refresh_s: float = 30.0
    max_retry_backoff_s: float = 300.0
    # Refuse (HTTP 400) a job no known node could ever hold, instead of queueing it forever.
    reject_unplaceable: bool = True

    @property
    def config_path(self) -> Path:
        """Where ``llmos up`` writes the admin token and URL for the CLI."""
        return self.home / "config"

    @property
    def effective_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"

    @property
    def sqlite_path(self) -> Path:
        return self.home / "llmos.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"
