"""Multi-LoRA over one shared base: PEFT adapter loading, an LRU adapter cache, and
the batched delta applied inside the model.

An adapter is a PEFT directory (``adapter_config.json`` + ``adapter_model.safetensors``).
Only the low-rank factors live in memory: per (layer, projection) ``A`` [r, in] and
``B * scaling`` [out, r]; the base weights are never copied, which is why 16 adapters
cost a few percent of the base.

In one step, rows (tokens) of different requests may use different adapters. A
:class:`LoraBatch` groups the rows by adapter once per step and, for every targeted
projection, adds ``(x[rows] @ A.T) @ B.T`` to the base output of those rows (two
small matmuls per adapter present; when all rows share one adapter no gather at all).
Rows without an adapter are untouched.

The manager keeps at most ``max_loras`` adapters resident; registering more evicts the
least recently used one that the current batch does not need (it is reloaded from its
directory the next time a request asks for it). Not thread-safe: engine thread only.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from llmos.errors import NotFound, ValidationError
from llmos.serving.engine.config import ModelConfig

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])\.weight$")


def projection_dims(cfg: ModelConfig, proj: str) -> tuple[int, int]:
    """(in_features, out_features) of a base projection."""
    q = cfg.num_attention_heads * cfg.head_dim
    kv = cfg.num_key_value_heads * cfg.head_dim
    h, inter = cfg.hidden_size, cfg.intermediate_size
    return {
        "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
        "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h),
    }[proj]


@dataclass
class LoraAdapter:
    name: str
    path: Path
    rank: int
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.weights.values())

    @classmethod
    def load(cls, name: str, path: Path, cfg: ModelConfig, max_rank: int, device: torch.device,
             dtype: torch.dtype) -> LoraAdapter:
        """Read and validate a PEFT LoRA directory against the base model's shapes."""
        cfg_path = path / "adapter_config.json"
        weights_path = path / "adapter_model.safetensors"
        if not cfg_path.is_file() or not weights_path.is_file():
            raise ValidationError(f"{path} is not a PEFT adapter dir (needs adapter_config.json and "
                                  "adapter_model.safetensors)")
        try:
            acfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{cfg_path} is not valid JSON: {exc}") from exc
        if acfg.get("peft_type", "LORA") != "LORA":
            raise ValidationError(f"adapter {name!r}: only LoRA adapters are supported, got {acfg.get('peft_type')}")
        if acfg.get("use_dora"):
            raise ValidationError(f"adapter {name!r}: DoRA adapters are not supported")
        if acfg.get("modules_to_save"):
            raise ValidationError(f"adapter {name!r}: modules_to_save is not supported")
        if acfg.get("bias", "none") != "none":
            raise ValidationError(f"adapter {name!r}: LoRA bias is not supported")
        alpha = float(acfg.get("lora_alpha", 8))
        alpha_pattern: dict[str, float] = acfg.get("alpha_pattern") or {}
        rslora = bool(acfg.get("use_rslora", False))
        factors: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        with safe_open(str(weights_path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                m = _KEY.search(key)
                if m is None or m.group(2) not in PROJECTIONS:
                    raise ValidationError(f"adapter {name!r}: unsupported weight {key!r}")
                factors.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = fh.get_tensor(key)
        if not factors:
            raise ValidationError(f"adapter {name!r} has no LoRA weights")
        adapter = cls(name=name, path=path, rank=0)
        for (layer, proj), ab in sorted(factors.items()):
            if set(ab) != {"A", "B"}:
                raise ValidationError(f"adapter {name!r}: layer {layer} {proj} lacks lora_A or lora_B")
            a, b = ab["A"], ab["B"]
            fan_in, fan_out = projection_dims(cfg, proj)
            r = a.shape[0]
            if layer >= cfg.num_hidden_layers or a.shape != (r, fan_in) or b.shape != (fan_out, r):
                raise ValidationError(
                    f"adapter {name!r} does not match the base model: layer {layer} {proj} has "
                    f"A {tuple(a.shape)}, B {tuple(b.shape)}; base expects in={fan_in}, out={fan_out} "
                    f"and {cfg.num_hidden_layers} layers"
                )
            if r > max_rank:
                raise ValidationError(f"adapter {name!r} has rank {r} > max_lora_rank {max_rank}")
            a_alpha = next((float(v) for k, v in alpha_pattern.items()
                            if re.search(rf"(^|\.){re.escape(k)}$", f"layers.{layer}.{proj}")), alpha)
            scaling = a_alpha / math.sqrt(r) if rslora else a_alpha / r
            adapter.rank = max(adapter.rank, r)
            adapter.weights[(layer, proj)] = (
                a.to(device=device, dtype=dtype).contiguous(),
                (b.float() * scaling).to(device=device, dtype=dtype).contiguous(),
            )
        return adapter


class LoraBatch:
    """Per-step mapping of token rows to adapters, applied inside every targeted projection."""

    def __init__(self, groups: list[tuple[LoraAdapter, torch.Tensor | None]]) -> None:
        self.groups = groups

    def apply(self, layer: int, proj: str, x: torch.Tensor, y: torch.Tensor) -> None:
        """``y[rows] += (x[rows] @ A.T) @ B.T`` for each adapter group, in place."""
        for adapter, rows in self.groups:
            w = adapter.weights.get((layer, proj))
            if w is None:
                continue
            a, b = w
            if rows is None:
                y.add_(F.linear(F.linear(x, a), b))
            else:
                y.index_add_(0, rows, F.linear(F.linear(x.index_select(0, rows), a), b))


class LoraManager:
    def __init__(self, cfg: ModelConfig, max_loras: int, max_lora_rank: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.cfg = cfg
        self.max_loras = max_loras
        self.max_lora_rank = max_lora_rank
        self.device = device
        self.dtype = dtype
        self._paths: dict[str, Path] = {}
        self._resident: OrderedDict[str, LoraAdapter] = OrderedDict()
        self.num_loads = 0
        self.num_evictions = 0
        self._generation: dict[str, int] = {}
        self._next_generation = 0

    def _load(self, name: str, path: Path) -> LoraAdapter:
        adapter = LoraAdapter.load(name, path, self.cfg, self.max_lora_rank, self.device, self.dtype)
        self.num_loads += 1
        return adapter

    def add(self, name: str, path: Path, keep: set[str] | None = None) -> None:
        """Register and load an adapter (replacing one of the same name); validates first."""
        if not name:
            raise ValidationError("adapter name must be non-empty")
        adapter = self._load(name, path)
        self._paths[name] = path
        self._next_generation += 1
        self._generation[name] = self._next_generation
        self._resident[name] = adapter
        self._resident.move_to_end(name)
        self._evict(keep or set())

    def remove(self, name: str) -> None:
        if name not in self._paths:
            raise NotFound(f"LoRA adapter {name!r} is not loaded")
        del self._paths[name]
        self._resident.pop(name, None)

    def cache_salt(self, name: str) -> str:
        """Identity of the adapter's current weights, for prefix-cache keys."""
        return f"{name}#{self._generation[name]}"

    def names(self) -> list[str]:
        return list(self._paths)

    def __contains__(self, name: str) -> bool:
        return name in self._paths

    def resident(self) -> list[str]:
        return list(self._resident)

    @property
    def resident_bytes(self) -> int:
        return sum(a.nbytes for a in self._resident.values())

    def _evict(self, keep: set[str]) -> None:
        for name in list(self._resident):
            if len(self._resident) <= self.max_loras:
                break
            if name not in keep:
                del self._resident[name]
                self.num_evictions += 1

    def activate(self, names: set[str]) -> dict[str, LoraAdapter]:
        """Make ``names`` resident (loading evicted ones), mark them most recently used."""
        out: dict[str, LoraAdapter] = {}
        for name in names:
            if name not in self._paths:
                raise NotFound(f"LoRA adapter {name!r} is not loaded")
            if name not in self._resident:
                self._resident[name] = self._load(name, self._paths[name])
            self._resident.move_to_end(name)
            out[name] = self._resident[name]
        self._evict(names)
        return out

    def build_batch(self, row_loras: list[str | None], device: torch.device) -> LoraBatch | None:
        """Group rows by adapter; None when no row uses one."""
        names = {n for n in row_loras if n is not None}
        if not names:
            return None
        adapters = self.activate(names)
        if len(names) == 1 and None not in row_loras:
            return LoraBatch([(adapters[names.pop()], None)])
        groups: list[tuple[LoraAdapter, torch.Tensor | None]] = []
        for name in names:
            rows = [i for i, n in enumerate(row_loras) if n == name]
            groups.append((adapters[name], torch.tensor(rows, dtype=torch.long, device=device)))
        return LoraBatch(groups)
