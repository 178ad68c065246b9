"""The model registry: ``name:version`` over the artifact store, with lineage and tags.

References: ``name`` (latest version), ``name:3`` (a version) or
``name:production`` (a tag). Versions are immutable; registering the same
files again makes a new version that stores no new bytes.

A full model version is a Hugging Face directory (``config.json`` +
``*.safetensors``); an adapter version is a PEFT directory
(``adapter_config.json`` + ``adapter_model.safetensors``) whose ``base`` is a
full model version. Registration copies blobs first and commits the row last,
so a crash never leaves a visible half-written version.

Thread/process safety: as safe as the store (one DB transaction per call).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from llmos.errors import NotFound, ValidationError
from llmos.models.artifacts import ArtifactStore, GcReport, Manifest
from llmos.store import Store
from llmos.store import registry as repo

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")
TAG_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9._-]{0,62}$")
ARCH_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "intermediate_size", "vocab_size",
)


@dataclass(frozen=True)
class ModelVersion:
    """A registry entry as the rest of llmos sees it."""

    name: str
    version: int
    kind: str
    manifest_digest: str
    size_bytes: int
    base: str | None = None
    parent: str | None = None
    job_id: str | None = None
    dataset: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    created_at: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def is_adapter(self) -> bool:
        return self.kind == "adapter"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "ref": self.ref, "kind": self.kind,
            "size_bytes": self.size_bytes, "manifest_digest": self.manifest_digest, "base": self.base,
            "parent": self.parent, "job_id": self.job_id, "dataset": self.dataset, "metrics": self.metrics,
            "info": self.info, "tags": list(self.tags), "created_at": self.created_at,
            "files": sorted(self.manifest),
        }


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split ``name[:version|tag]``; raises :class:`ValidationError` on a malformed ref."""
    name, _, sel = ref.partition(":")
    if not NAME_RE.match(name) or (sel and not re.match(r"^[a-zA-Z0-9._-]{1,63}$", sel)):
        raise ValidationError(f"malformed model reference {ref!r}; expected name[:version|tag]")
    return name, sel or None


def read_architecture(model_dir: Path) -> dict[str, Any]:
    cfg = json.loads((model_dir / "config.json").read_text())
    return {k: cfg.get(k) for k in ARCH_KEYS}


def _check_model_dir(d: Path) -> str:
    if (d / "adapter_config.json").is_file():
        if not (d / "adapter_model.safetensors").is_file():
            raise ValidationError(f"{d}: adapter directory without adapter_model.safetensors")
        return "adapter"
    if not (d / "config.json").is_file():
        raise ValidationError(f"{d}: not a Hugging Face model directory (no config.json)")
    if not any(d.glob("*.safetensors")):
        raise ValidationError(f"{d}: no *.safetensors weights (only safetensors are accepted)")
    try:
        json.loads((d / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValidationError(f"{d}/config.json is not valid JSON: {e.msg}") from None
    return "model"


def check_adapter_fits(adapter_dir: Path, base_arch: dict[str, Any]) -> None:
    """Raise :class:`ValidationError` unless the LoRA tensors' shapes fit ``base_arch``."""
    hidden, inter = base_arch.get("hidden_size"), base_arch.get("intermediate_size")
    layers = base_arch.get("num_hidden_layers") or 0
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
            m = re.search(r"layers\.(\d+)\.", key)
            if m and int(m.group(1)) >= layers:
                raise ValidationError(
                    f"adapter targets layer {m.group(1)} but the base has {layers} layers: wrong base model"
                )
            shape = f.get_slice(key).get_shape()
            if "lora_A" in key and shape[-1] not in (hidden, inter):
                raise ValidationError(
                    f"adapter tensor {key} has input size {shape[-1]}; the base has hidden size {hidden}: "
                    "wrong base model"
                )


class ModelRegistry:
    """Registry logic; ``store`` holds rows, ``artifacts`` holds bytes."""

    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    @classmethod
    def open(cls, home: str | Path, database_url: str | None = None) -> ModelRegistry:
        """The registry of an llmos home (``$LLMOS_HOME``); SQLite there unless a URL is given."""
        home = Path(home)
        return cls(Store(database_url or f"sqlite:///{home / 'llmos.db'}"), ArtifactStore(home / "artifacts"))

    # ------------------------------------------------------------ reads

    def _to_version(self, row: repo.ModelVersionRow, tags: dict[int, list[str]]) -> ModelVersion:
        return ModelVersion(
            name=row.model_name, version=row.version, kind=row.kind, manifest_digest=row.manifest_digest,
            size_bytes=row.size_bytes, base=row.base, parent=row.parent, job_id=row.job_id,
            dataset=row.dataset, metrics=dict(row.metrics or {}), info=dict(row.info or {}),
            tags=tuple(sorted(tags.get(row.version, []))), created_at=row.created_at,
            manifest=dict(row.manifest),
        )

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``ref`` names; raises :class:`NotFound` / :class:`ValidationError`."""
        name, sel = parse_ref(ref)
        with self.store.session() as s:
            if repo.get_model(s, name) is None:
                raise NotFound(f"model {name!r} not found in the registry")
            if sel is None or sel == "latest":
                row = repo.latest_version(s, name)
            elif sel.isdigit():
                row = repo.get_version(s, name, int(sel))
            else:
                v = repo.get_tag(s, name, sel)
                if v is None:
                    raise NotFound(f"model {name!r} has no version or tag {sel!r}")
                row = repo.get_version(s, name, v)
            return self._to_version(row, repo.tags_of(s, name))

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        with self.store.session() as s:
            if name is not None and repo.get_model(s, name) is None:
                raise NotFound(f"model {name!r} not found in the registry")
            rows = repo.list_versions(s, name)
            tags = {n: repo.tags_of(s, n) for n in {r.model_name for r in rows}}
            return [self._to_version(r, tags[r.model_name]) for r in rows]

    def find_by_job(self, name: str, job_id: str) -> ModelVersion | None:
        """The version of ``name`` a job already registered (lets a retried task skip re-registering)."""
        for v in reversed(self.versions(name) if self._exists(name) else []):
            if v.job_id == job_id:
                return v
        return None

    def _exists(self, name: str) -> bool:
        with self.store.session() as s:
            return repo.get_model(s, name) is not None

    def manifest(self, version: ModelVersion) -> Manifest:
        return Manifest.from_dict(version.manifest)

    def path(self, ref: str | ModelVersion, *, verify: bool = True) -> Path:
        """A local directory with the version's files (integrity-checked checkout)."""
        v = self.resolve(ref) if isinstance(ref, str) else ref
        return self.artifacts.checkout(self.manifest(v), verify=verify)

    def lineage(self, ref: str) -> list[ModelVersion]:
        """``ref`` then its parents, newest first (stops at a parent outside the registry)."""
        chain = [self.resolve(ref)]
        seen = {chain[0].ref}
        while chain[-1].parent and chain[-1].parent not in seen:
            try:
                chain.append(self.resolve(chain[-1].parent))
            except NotFound:
                break
            seen.add(chain[-1].ref)
        return chain

    # ------------------------------------------------------------ writes

    def register(
        self,
        src_dir: str | Path,
        name: str,
        *,
        base: str | None = None,
        parent: str | None = None,
        job_id: str | None = None,
        dataset: str | None = None,
        metrics: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Store ``src_dir`` as the next version of ``name``. Not idempotent (new version each call)."""
        if not NAME_RE.match(name):
            raise ValidationError(f"invalid model name {name!r}")
        src = Path(src_dir)
        if not src.is_dir():
            raise ValidationError(f"not a directory: {src}")
        kind = _check_model_dir(src)
        info = dict(info or {})
        base_ref: str | None = None
        if kind == "adapter":
            if base is None:
                raise ValidationError("an adapter needs its base model (base='name:version')")
            base_v = self.resolve(base)
            if base_v.is_adapter:
                raise ValidationError(f"{base_v.ref} is an adapter; an adapter's base must be a full model")
            check_adapter_fits(src, base_v.info.get("architecture", {}))
            base_ref = base_v.ref
            info["architecture"] = base_v.info.get("architecture", {})
        else:
            if base is not None:
                raise ValidationError("only adapters take a base model")
            info["architecture"] = read_architecture(src)
        manifest = self.artifacts.put_dir(src)
        with self.store.session() as s:
            model = repo.ensure_model(s, name)
            if description:
                model.description = description
            row = repo.insert_version(
                s, model_name=name, kind=kind, manifest_digest=manifest.digest, manifest=manifest.to_dict(),
                size_bytes=manifest.size_bytes, base=base_ref, parent=parent or base_ref, job_id=job_id,
                dataset=dataset, metrics=dict(metrics or {}), info=info,
            )
            return self._to_version(row, repo.tags_of(s, name))

    def record_metrics(self, ref: str, metrics: dict[str, Any]) -> ModelVersion:
        """Merge ``metrics`` into the version's recorded metrics (eval results)."""
        v = self.resolve(ref)
        with self.store.session() as s:
            row = repo.get_version(s, v.name, v.version)
            row.metrics = {**(row.metrics or {}), **metrics}
            s.flush()
            return self._to_version(row, repo.tags_of(s, v.name))

    def tag(self, ref: str, tag: str) -> ModelVersion:
        """Point ``tag`` of the model at the version ``ref`` names (moves it if set)."""
        if not TAG_RE.match(tag) or tag == "latest":
            raise ValidationError(f"invalid tag {tag!r}: letters, digits, '.', '_', '-'; not 'latest'")
        v = self.resolve(ref)
        with self.store.session() as s:
            repo.set_tag(s, v.name, tag, v.version)
        return self.resolve(f"{v.name}:{v.version}")

    def untag(self, name: str, tag: str) -> None:
        with self.store.session() as s:
            repo.remove_tag(s, name, tag)

    def delete(self, ref: str) -> None:
        """Drop a version row (blobs go at the next :meth:`gc`); refused while adapters use it."""
        v = self.resolve(ref)
        with self.store.session() as s:
            repo.delete_version(s, v.name, v.version)

    def gc(self, grace_s: float = 3600.0) -> GcReport:
        """Delete blobs no version references (see :meth:`ArtifactStore.gc`)."""
        live = [self.manifest(v) for v in self.versions()]
        return self.artifacts.gc(live, grace_s=grace_s)

    # ------------------------------------------------------------ checks

    def check_adapter_for(self, adapter_ref: str, model_ref: str) -> None:
        """Raise :class:`ValidationError` unless ``adapter_ref`` was made for ``model_ref``'s weights."""
        a, m = self.resolve(adapter_ref), self.resolve(model_ref)
        if not a.is_adapter:
            raise ValidationError(f"{a.ref} is a full model, not an adapter")
        if m.is_adapter:
            raise ValidationError(f"{m.ref} is an adapter; serve it on its base {m.base}")
        if a.base == m.ref:
            return
        base = self.resolve(a.base) if a.base else None
        if base is None or base.manifest_digest != m.manifest_digest:
            raise ValidationError(f"adapter {a.ref} was trained for base {a.base}, not {m.ref}")
