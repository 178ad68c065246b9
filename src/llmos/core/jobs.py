"""Job specs: what a user writes, validated with errors that point at the field.

Specs are flat documents with one ``kind`` each. Parsing never performs I/O:
:func:`parse_job_spec` takes a mapping, :func:`parse_job_text` a YAML/JSON
string. Both raise :class:`llmos.errors.ValidationError` whose message names
every offending field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmos.core.devices import canonical_device_type
from llmos.core.resources import ResourceRequest
from llmos.errors import ValidationError

NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$"
MODEL_REF_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,127}(:[a-zA-Z0-9._-]{1,63})?$"
# A serve job also accepts an absolute local path (a model directory on the node).
SERVE_MODEL_PATTERN = r"^(/[^\x00\n]{1,4095}|[a-zA-Z0-9][a-zA-Z0-9._/-]{0,127}(:[a-zA-Z0-9._-]{1,63})?)$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """Resources of one task; every task of a job asks for the same."""

    devices: int = Field(0, ge=0, le=1024)
    device_types: tuple[str, ...] = ()
    min_device_memory_gib: float = Field(0.0, ge=0)
    cpus: float = Field(1.0, gt=0, le=4096)
    memory_gib: float = Field(1.0, gt=0, le=65536)

    @field_validator("device_types")
    @classmethod
    def _known_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for name in v:
            try:
                out.append(canonical_device_type(name))
            except KeyError as e:
                raise ValueError(str(e.args[0])) from None
        return tuple(out)

    @model_validator(mode="after")
    def _fits_some_type(self) -> Resources:
        try:
            self.to_request()
        except ValueError as e:
            raise ValueError(str(e)) from None
        return self

    def to_request(self) -> ResourceRequest:
        return ResourceRequest(
            devices=self.devices,
            device_types=self.device_types,
            min_device_memory_gib=self.min_device_memory_gib,
            cpus=self.cpus,
            memory_gib=self.memory_gib,
        )


class JobSpecBase(_Strict):
    """Fields every kind shares."""

    name: str = Field(pattern=NAME_PATTERN)
    resources: Resources = Resources()
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first")
    preemptible: bool = True
    max_retries: int = Field(0, ge=0, le=100)
    retry_backoff_s: float = Field(1.0, ge=0, le=3600)
    env: dict[str, str] = Field(default_factory=dict)
    estimated_duration_s: float | None = Field(None, gt=0, description="the user's own estimate")
    estimated_memory_gib: float | None = Field(
        None, ge=0, description="memory one task needs; filled at submit by the memory model when absent"
    )

    @property
    def num_tasks(self) -> int:
        """Tasks in the job's gang (all start together or none does)."""
        return 1


class CommandSpec(JobSpecBase):
    """Run an arbitrary command; ``tasks`` > 1 runs a gang of identical copies."""

    kind: Literal["command"] = "command"
    command: list[str] = Field(min_length=1)
    tasks: int = Field(1, ge=1, le=1024)
    workdir: str | None = None

    @property
    def num_tasks(self) -> int:
        return self.tasks


class TrainSpec(JobSpecBase):
    """Pretrain a model from a config (``llmos-tiny``, ``llmos-small``)."""

    kind: Literal["train"] = "train"
    model: str = Field("llmos-tiny", pattern=MODEL_REF_PATTERN)
    dataset: str = "builtin:corpus"
    steps: int = Field(100, ge=1, le=10_000_000)
    batch_size: int = Field(8, ge=1, le=65536)
    seq_len: int = Field(128, ge=8, le=131072)
    grad_accum: int = Field(1, ge=1, le=1024)
    lr: float = Field(1e-3, gt=0, le=10)
    warmup_steps: int = Field(10, ge=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = Field(50, ge=1)
    workers: int = Field(1, ge=1, le=1024, description="data-parallel gang size")
    seed: int = 0
    output_model: str | None = Field(None, pattern=NAME_PATTERN)

    @property
    def num_tasks(self) -> int:
        return self.workers


class FinetuneSpec(TrainSpec):
    """Fine-tune a registered model, fully or with LoRA."""

    kind: Literal["finetune"] = "finetune"  # type: ignore[assignment]
    base_model: str = Field(pattern=MODEL_REF_PATTERN)
    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: Literal["attention", "all"] = Field(
        "attention", description="LoRA on q/k/v/o only, or on every linear layer (MLP too)"
    )
    lr: float = Field(1e-3, gt=0, le=10)


class EvalSpec(JobSpecBase):
    """Evaluate a model: perplexity on held-out text, exact match on tasks."""

    kind: Literal["eval"] = "eval"
    model: str = Field(pattern=MODEL_REF_PATTERN)
    tasks: list[str] = Field(default_factory=lambda: ["perplexity"])
    max_examples: int = Field(200, ge=1)


class BatchSpec(JobSpecBase):
    """Generate completions for a JSONL file, sharded across tasks."""

    kind: Literal["batch"] = "batch"
    model: str = Field(pattern=MODEL_REF_PATTERN)
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    shards: int = Field(1, ge=1, le=1024)
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0, le=5)

    @property
    def num_tasks(self) -> int:
        return self.shards


class ServeSpec(JobSpecBase):
    """A deployment: replicas of a model server, optionally with adapters.

    ``model`` and each adapter are registry references (``name[:version]``) or
    absolute paths of local model directories (one machine, tests).
    """

    kind: Literal["serve"] = "serve"
    model: str = Field(pattern=SERVE_MODEL_PATTERN)
    adapters: list[Annotated[str, Field(pattern=SERVE_MODEL_PATTERN)]] = Field(default_factory=list)
    replicas: int = Field(1, ge=1, le=1024)
    max_num_seqs: int = Field(64, ge=1)
    kv_cache_gib: float = Field(0.5, gt=0)
    preemptible: bool = False

    @property
    def num_tasks(self) -> int:
        return self.replicas


JobSpec = Annotated[
    CommandSpec | TrainSpec | FinetuneSpec | EvalSpec | BatchSpec | ServeSpec,
    Field(discriminator="kind"),
]
JOB_KINDS: tuple[str, ...] = ("command", "train", "finetune", "eval", "batch", "serve")

_ADAPTER: pydantic.TypeAdapter[JobSpec] = pydantic.TypeAdapter(JobSpec)


def _format_errors(err: pydantic.ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "spec"
        msg = e["msg"]
        if e["type"] == "union_tag_invalid":
            msg = f"unknown kind; expected one of: {', '.join(JOB_KINDS)}"
        elif e["type"] == "union_tag_not_found":
            msg = f"missing 'kind'; expected one of: {', '.join(JOB_KINDS)}"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_job_spec(data: Any) -> JobSpec:
    """Validate a mapping as a job spec. Raises :class:`ValidationError`."""
    if not isinstance(data, dict):
        raise ValidationError(f"a job spec must be a mapping, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except pydantic.ValidationError as e:
        raise ValidationError(f"invalid job spec: {_format_errors(e)}") from None


def parse_job_text(text: str) -> JobSpec:
    """Parse YAML (JSON is YAML) into a validated job spec."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValidationError(f"malformed YAML: {e}") from None
    return parse_job_spec(data)


def spec_to_dict(spec: JobSpecBase) -> dict[str, Any]:
    """The JSON-able form stored and sent back to users."""
    return spec.model_dump(mode="json")
