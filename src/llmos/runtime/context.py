"""What a worker process knows about itself, read once from the worker contract.

See ``docs/worker-contract.md`` (``LLMOS_SPEC_PATH``, ``LLMOS_JOB_ID``,
``LLMOS_CHECKPOINT_DIR``, ``RANK`` / ``WORLD_SIZE`` ...). Outside the control
plane a runtime can be started by hand with ``LLMOS_SPEC_PATH`` (and
optionally ``LLMOS_HOME``) alone; reports then go nowhere.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.client.reporter import TaskReporter
from llmos.core.jobs import JobSpecBase, parse_job_spec
from llmos.errors import ValidationError
from llmos.models.registry import ModelRegistry
from llmos.settings import Settings


@dataclass
class WorkerContext:
    spec: JobSpecBase
    job_id: str
    task_index: int
    num_tasks: int
    rank: int
    world_size: int
    checkpoint_dir: Path | None
    home: Path
    database_url: str | None
    reporter: TaskReporter

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerContext:
        env = os.environ if env is None else env
        spec_path = env.get("LLMOS_SPEC_PATH")
        if not spec_path:
            raise ValidationError("LLMOS_SPEC_PATH is not set: the runtime needs its job spec")
        try:
            data = json.loads(Path(spec_path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValidationError(f"cannot read job spec {spec_path}: {e}") from None
        spec = parse_job_spec(data)
        assert isinstance(spec, JobSpecBase)
        settings = Settings()
        ckpt = env.get("LLMOS_CHECKPOINT_DIR")
        return cls(
            spec=spec,
            job_id=env.get("LLMOS_JOB_ID", "local"),
            task_index=int(env.get("LLMOS_TASK_INDEX", "0")),
            num_tasks=int(env.get("LLMOS_NUM_TASKS", "1")),
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            checkpoint_dir=Path(ckpt) if ckpt else None,
            home=Path(env.get("LLMOS_HOME") or settings.home),
            database_url=env.get("LLMOS_DATABASE_URL") or settings.database_url,
            reporter=TaskReporter.from_env(env),
        )

    def registry(self) -> ModelRegistry:
        return ModelRegistry.open(self.home, self.database_url)

    def gang_checkpoint_dir(self) -> Path | None:
        """The checkpoint directory every rank of a data-parallel gang shares: rank 0's.

        Weights are replicated, so rank 0 alone writes and all ranks resume from it
        (the control plane gives each task ``.../task-<index>``; see the worker contract).
        """
        if self.checkpoint_dir is None:
            return None
        if re.fullmatch(r"task-\d+", self.checkpoint_dir.name):
            return self.checkpoint_dir.parent / "task-0"
        return self.checkpoint_dir
