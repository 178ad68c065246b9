"""The model memory manager: several models in one replica under a memory budget.

A replica knows a set of models (:class:`ModelSpec`, registered up front or at
run time) and keeps some of them loaded. A request for a known model that is
not loaded loads it on demand; when the budget cannot hold it, loaded models
that are idle (no request in flight) and not pinned are unloaded least recently
used first. A model whose keep-alive expired while idle is unloaded by
:meth:`ModelManager.reap` (the app calls it every second). These are the
controls Ollama users know: ``keep_alive`` (seconds, negative = forever) and
pinning.

Memory of a model is estimated before loading from what it must hold: the bytes
of its weight files plus, for generative models, the KV cache it is configured
with (``kv_cache_gib``).

Adapters (LoRA) belong to a base model; ``model`` names in requests resolve to
``(base, adapter or None)``. Adapters registered while their base is unloaded
are attached when it loads.

Thread-safety: every method is a coroutine run on the app's event loop; loads
and unloads are serialised by one asyncio lock and run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from llmos.errors import LLMOSError, NotFound, ResourceExhausted, ValidationError
from llmos.serving.server.embeddings import EmbeddingModel, is_embedding_model_dir
from llmos.serving.server.engine_loop import EngineLoop

log = logging.getLogger(__name__)

GIB = 1024**3
ModelKind = Literal["generate", "embed"]


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelLoadFailed(LLMOSError):
    """The model's files are there but could not be loaded (corrupt weights, OOM)."""

    code = "model_load_failed"
    http_status = 503


@dataclass(frozen=True)
class ModelSpec:
    """A model this replica can serve. ``keep_alive_s`` None means the manager default."""

    name: str
    path: Path
    loras: tuple[tuple[str, Path], ...] = ()
    pinned: bool = False
    keep_alive_s: float | None = None
    max_num_seqs: int = 64
    kv_cache_gib: float = 0.5
    device: str | None = None
    enforce_eager: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValidationError("a model needs a name")
        object.__setattr__(self, "path", Path(self.path))
        if not (self.path / "config.json").is_file():
            raise ValidationError(f"model {self.name}: {self.path} is not a model directory (no config.json)")
        if self.max_num_seqs < 1:
            raise ValidationError("max_num_seqs must be >= 1")
        if self.kv_cache_gib <= 0:
            raise ValidationError("kv_cache_gib must be > 0")

    @property
    def kind(self) -> ModelKind:
        return "embed" if is_embedding_model_dir(self.path) else "generate"

    def estimated_memory_gib(self) -> float:
        weights = sum(
            f.stat().st_size for f in self.path.iterdir() if f.suffix in (".safetensors", ".bin", ".pt")
        )
        kv = self.kv_cache_gib if self.kind == "generate" else 0.0
        return weights / GIB + kv


@dataclass(frozen=True)
class ManagerConfig:
    """``memory_budget_gib`` None: no limit; ``default_keep_alive_s`` < 0: keep loaded forever."""

    memory_budget_gib: float | None = None
    default_keep_alive_s: float = -1.0

    def __post_init__(self) -> None:
        if self.memory_budget_gib is not None and self.memory_budget_gib <= 0:
            raise ValidationError("memory_budget_gib must be > 0")


@dataclass
class LoadedModel:
    """A model in memory: an engine loop (generate) or an encoder (embed)."""

    spec: ModelSpec
    kind: ModelKind
    memory_gib: float
    tokenizer: Any
    max_model_len: int
    loop: EngineLoop | None = None
    embedder: EmbeddingModel | None = None
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0

    @property
    def busy(self) -> bool:
        return self.leases > 0 or (self.loop is not None and self.loop.in_flight > 0)


def _load(spec: ModelSpec) -> LoadedModel:
    """Build the in-memory model (runs in a worker thread)."""
    mem = spec.estimated_memory_gib()
    if spec.kind == "embed":
        emb = EmbeddingModel(spec.path, device=spec.device)
        return LoadedModel(spec, "embed", mem, emb.tokenizer, emb.max_model_len, embedder=emb)
    from transformers import AutoTokenizer

    from llmos.serving.engine import EngineConfig, LLMEngine

    engine = LLMEngine(
        spec.path,
        EngineConfig(max_num_seqs=spec.max_num_seqs, kv_cache_gib=spec.kv_cache_gib, device=spec.device,
                     enforce_eager=spec.enforce_eager),
    )
    for lora_name, lora_path in spec.loras:
        engine.add_lora(lora_name, lora_path)
    # The server's own tokenizer instance: the engine thread uses its own, and a
    # fast tokenizer must not be used from two threads at once.
    tok = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
    loop = EngineLoop(engine, spec.name)
    loop.start()
    return LoadedModel(spec, "generate", mem, tok, int(engine.max_model_len), loop=loop)


class ModelManager:
    """Which models are known and loaded; loads on demand and evicts LRU under the budget."""

    def __init__(self, config: ManagerConfig | None = None) -> None:
        self.config = config or ManagerConfig()
        self._specs: dict[str, ModelSpec] = {}
        self._loaded: dict[str, LoadedModel] = {}
        self._adapters: dict[str, str] = {}  # adapter name -> base name
        self._lock = asyncio.Lock()
        self.created = int(time.time())

    # registry ------------------------------------------------------------------
    def register(self, spec: ModelSpec) -> None:
        """Make ``spec`` servable (not loaded yet). Names of models and adapters are unique."""
        if spec.name in self._adapters or spec.name in self._specs:
            raise ValidationError(f"model name {spec.name!r} is already in use")
        lora_names = [n for n, _ in spec.loras]
        for lora_name in lora_names:
            if lora_name in self._specs or lora_name in self._adapters or lora_name == spec.name:
                raise ValidationError(f"adapter name {lora_name!r} is already in use")
        if len(set(lora_names)) != len(lora_names):
            raise ValidationError(f"model {spec.name}: adapter names repeat")
        self._specs[spec.name] = spec
        for lora_name, _ in spec.loras:
            self._adapters[lora_name] = spec.name

    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def adapters(self) -> dict[str, str]:
        return dict(self._adapters)

    def resolve(self, name: str) -> tuple[str, str | None]:
        """``(base model, adapter or None)`` for a requested ``model`` name; 404 when unknown."""
        if name in self._specs:
            return name, None
        if name in self._adapters:
            return self._adapters[name], name
        known = sorted([*self._specs, *self._adapters])
        raise ModelNotFound(f"The model `{name}` does not exist. Known models: {', '.join(known) or 'none'}")

    # loading ---------------------------------------------------------------
    def preload(self, name: str, *, pinned: bool = False) -> LoadedModel:
        """Load ``name`` synchronously, before the app serves (CLI and worker start-up).

        Not for use while the app runs: it bypasses the async lock. Any loading
        fault is raised as :class:`ValidationError` with the cause in its message.
        """
        spec = self._specs.get(name)
        if spec is None:
            raise ModelNotFound(f"The model `{name}` does not exist.")
        if pinned:
            spec = self._specs[name] = replace(spec, pinned=True)
        if name in self._loaded:
            return self._loaded[name]
        budget = self.config.memory_budget_gib
        if budget is not None and self._used_gib() + spec.estimated_memory_gib() > budget:
            raise ResourceExhausted(f"model {name} does not fit the replica's {budget:.2f} GiB budget")
        try:
            model = _load(spec)
        except LLMOSError:
            raise
        except Exception as e:
            raise ValidationError(f"cannot load model {name} from {spec.path}: {type(e).__name__}: {e}") from e
        self._loaded[name] = model
        return model

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[LoadedModel]:
        """Hold a base model loaded (not evictable) for the duration of a request."""
        model = await self.ensure_loaded(name, lease=True)
        try:
            yield model
        finally:
            model.leases -= 1
            model.last_used = time.monotonic()

    async def ensure_loaded(
        self, name: str, *, lease: bool = False, pinned: bool | None = None, keep_alive_s: float | None = None
    ) -> LoadedModel:
        """Load ``name`` if needed (evicting idle LRU models to fit) and return it."""
        spec = self._specs.get(name)
        if spec is None:
            self.resolve(name)  # raises ModelNotFound
            raise ModelNotFound(f"{name} is an adapter; load its base model")
        if pinned is not None or keep_alive_s is not None:
            spec = replace(
                spec,
                pinned=spec.pinned if pinned is None else pinned,
                keep_alive_s=spec.keep_alive_s if keep_alive_s is None else keep_alive_s,
            )
            self._specs[name] = spec
            if name in self._loaded:
                self._loaded[name].spec = spec
        model = self._loaded.get(name)
        if model is None:
            async with self._lock:
                model = self._loaded.get(name)
                if model is None:
                    await self._make_room(spec)
                    log.info("loading model %s from %s", name, spec.path)
                    try:
                        model = await asyncio.to_thread(_load, spec)
                    except LLMOSError:
                        raise
                    except Exception as e:
                        log.exception("loading %s failed", name)
                        raise ModelLoadFailed(f"model {name} failed to load: {type(e).__name__}: {e}") from e
                    self._loaded[name] = model
        assert model is not None
        if lease:
            model.leases += 1
        model.last_used = time.monotonic()
        return model

    def _used_gib(self) -> float:
        return sum(m.memory_gib for m in self._loaded.values())

    async def _make_room(self, spec: ModelSpec) -> None:
        budget = self.config.memory_budget_gib
        if budget is None:
            return
        need = spec.estimated_memory_gib()
        if need > budget:
            raise ResourceExhausted(
                f"model {spec.name} needs {need:.2f} GiB; the replica's budget is {budget:.2f} GiB"
            )
        while self._used_gib() + need > budget:
            idle = [m for m in self._loaded.values() if not m.busy and not m.spec.pinned]
            if not idle:
                raise ResourceExhausted(
                    f"cannot load {spec.name} ({need:.2f} GiB): {self._used_gib():.2f} of {budget:.2f} GiB "
                    "are held by models that are busy or pinned"
                )
            victim = min(idle, key=lambda m: m.last_used)
            log.info("evicting idle model %s to make room for %s", victim.spec.name, spec.name)
            await self._unload_locked(victim.spec.name)

    async def unload(self, name: str) -> bool:
        """Unload ``name`` if loaded; in-flight requests end with 503. Returns whether it was loaded."""
        if name not in self._specs:
            self.resolve(name)
        async with self._lock:
            return await self._unload_locked(name)

    async def _unload_locked(self, name: str) -> bool:
        model = self._loaded.pop(name, None)
        if model is None:
            return False
        if model.loop is not None:
            await asyncio.to_thread(model.loop.stop)
        del model
        import gc

        gc.collect()
        return True

    async def reap(self) -> list[str]:
        """Unload idle models whose keep-alive has expired; returns their names."""
        now = time.monotonic()
        expired = []
        for m in list(self._loaded.values()):
            keep = (
                m.spec.keep_alive_s if m.spec.keep_alive_s is not None else self.config.default_keep_alive_s
            )
            if keep >= 0 and not m.busy and not m.spec.pinned and now - m.last_used >= keep:
                expired.append(m.spec.name)
        for name in expired:
            async with self._lock:
                still = self._loaded.get(name)
                if still is not None and not still.busy:
                    await self._unload_locked(name)
        return expired

    async def close(self) -> None:
        async with self._lock:
            for name in list(self._loaded):
                await self._unload_locked(name)

    # adapters ----------------------------------------------------------------
    async def add_adapter(self, name: str, path: str | Path, base: str | None = None) -> str:
        """Register a LoRA adapter under ``base`` (the only generative model when omitted)."""
        if name in self._specs or name in self._adapters:
            raise ValidationError(f"adapter name {name!r} is already in use")
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise ValidationError(f"{path} is not a PEFT adapter directory (no adapter_config.json)")
        if base is None:
            bases = [s.name for s in self._specs.values() if s.kind == "generate"]
            if len(bases) != 1:
                raise ValidationError("base_model_name is required when the replica serves several models")
            base = bases[0]
        spec = self._specs.get(base)
        if spec is None:
            raise ModelNotFound(f"The model `{base}` does not exist.")
        if spec.kind != "generate":
            raise ValidationError(f"{base} is an embedding model; adapters need a generative base")
        loaded = self._loaded.get(base)
        if loaded is not None and loaded.loop is not None:
            await loaded.loop.call(lambda eng: eng.add_lora(name, path))
        new_spec = replace(spec, loras=(*spec.loras, (name, path)))
        self._specs[base] = new_spec
        if loaded is not None:
            loaded.spec = new_spec
        self._adapters[name] = base
        return base

    async def remove_adapter(self, name: str) -> None:
        base = self._adapters.get(name)
        if base is None:
            raise ModelNotFound(f"The adapter `{name}` does not exist.")
        loaded = self._loaded.get(base)
        if loaded is not None and loaded.loop is not None:
            await loaded.loop.call(lambda eng: eng.remove_lora(name))
        spec = self._specs[base]
        new_spec = replace(spec, loras=tuple(x for x in spec.loras if x[0] != name))
        self._specs[base] = new_spec
        if loaded is not None:
            loaded.spec = new_spec
        del self._adapters[name]
