"""The memory model against measured peaks of real models (CPU allocator, via the profiler).

The profiler's ``[memory]`` events carry a running total of CPU bytes
allocated; its peak above its value when the step began, plus what was
resident before (the weights, counted exactly from the parameters) is the
measured peak of the step.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from llmos.core import memory
from llmos.core.resources import ResourceRequest
from llmos.models.family import create_model
from llmos.runtime.trainer import TrainConfig, apply_lora


def _peak_during(fn, tmp_path) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    # The running total is process-wide and carries over from earlier sessions: subtract its start.
    start = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in mem) - start


def _resident(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "method", "batch", "seq"),
    [("llmos-tiny", "full", 4, 128), ("llmos-tiny", "lora", 8, 128), ("llmos-small", "full", 2, 128),
     ("llmos-small", "lora", 2, 128)],
)
def test_train_estimate_within_30_percent(name, method, batch, seq, tmp_path):
    model = create_model(name)
    if method == "lora":
        model = apply_lora(model, TrainConfig(steps=1, method="lora"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(0, 2048, (batch, seq), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()

    measured = _resident(model) + _peak_during(step, tmp_path)
    estimate = memory.train_bytes(memory.FAMILY_SHAPES[name], batch, seq, method=method)
    assert abs(estimate - measured) / measured < 0.30, (estimate / 2**20, measured / 2**20)


@pytest.mark.parametrize("name", ["llmos-tiny", "llmos-small"])
def test_serve_estimate_within_30_percent(name, tmp_path):
    model = create_model(name)
    batch, ctx = 4, 256
    ids = torch.randint(0, 2048, (batch, ctx), generator=torch.Generator().manual_seed(0))
    out: dict[str, object] = {}

    def prefill() -> None:
        with torch.no_grad():
            out["r"] = model(input_ids=ids, use_cache=True)

    measured = _resident(model) + _peak_during(prefill, tmp_path)
    estimate = memory.serve_bytes(memory.FAMILY_SHAPES[name], batch, ctx)
    assert abs(estimate - measured) / measured < 0.30, (estimate / 2**20, measured / 2**20)


def test_family_shapes_match_the_real_models():
    for name, shape in memory.FAMILY_SHAPES.items():
        m = create_model(name)
        assert sum(p.numel() for p in m.parameters()) == shape.num_params
        assert memory.ModelShape.from_hf_config(m.config.to_dict()).num_params == shape.num_params
        lora = apply_lora(m, TrainConfig(steps=1, method="lora", lora_r=8))
        assert sum(p.numel() for p in lora.parameters() if p.requires_grad) == memory.lora_params(shape, 8)
        every = apply_lora(create_model(name), TrainConfig(steps=1, method="lora", lora_r=4, lora_targets="all"))
        assert sum(p.numel() for p in every.parameters() if p.requires_grad) == memory.lora_params(shape, 4, "all")


def test_lora_needs_less_than_full_and_kv_grows_linearly():
    s = memory.FAMILY_SHAPES["llmos-small"]
    assert memory.train_bytes(s, 8, 128, method="lora") < memory.train_bytes(s, 8, 128, method="full")
    assert memory.kv_cache_bytes(s, 2, 100) * 2 == memory.kv_cache_bytes(s, 4, 100)


def test_request_for_spec_raises_the_right_floor():
    cpu_only = ResourceRequest(cpus=1, memory_gib=1)
    assert memory.request_for_spec({"estimated_memory_gib": 3.5}, cpu_only).memory_gib == 3.5
    dev = ResourceRequest(devices=1, min_device_memory_gib=1)
    assert memory.request_for_spec({"estimated_memory_gib": 20}, dev).min_device_memory_gib == 20
    assert memory.request_for_spec({}, dev) is dev
    with pytest.raises(ValueError, match="exceeds every allowed"):
        memory.request_for_spec({"estimated_memory_gib": 30}, ResourceRequest(devices=1, device_types=("L4",)))
