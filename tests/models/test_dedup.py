"""Must show 3: two LoRA adapters and a full fine-tune of one base; the store holds the base once."""

from __future__ import annotations

from pathlib import Path

from llmos.core.jobs import parse_job_spec
from llmos.models.registry import ModelRegistry
from llmos.runtime.data import SampleStream
from llmos.runtime.jobs import prepare_training
from llmos.runtime.trainer import Trainer, save_trained


def _finetune(registry: ModelRegistry, tmp: Path, name: str, method: str, dataset: str):
    spec = parse_job_spec({"kind": "finetune", "name": name, "base_model": "base:1", "dataset": dataset,
                           "method": method, "steps": 2, "batch_size": 2, "seq_len": 32, "lora_r": 4})
    setup = prepare_training(spec, registry)
    result = Trainer(setup.model, SampleStream(setup.samples), setup.config,
                     pad_id=setup.tokenizer.pad_token_id).run()
    out = save_trained(result.model, tmp / name, base_ref="base:1", base_dir=setup.base_dir)
    return registry.register(out, name, base="base:1" if method == "lora" else None, parent="base:1",
                             dataset=dataset, metrics={"final_loss": result.final_loss})


def test_two_adapters_and_a_full_finetune_store_the_base_once(registry: ModelRegistry, tiny_dir: Path,
                                                              tmp_path: Path) -> None:
    base = registry.register(tiny_dir, "base")
    after_base = registry.artifacts.usage_bytes()
    assert after_base == base.size_bytes
    a1 = _finetune(registry, tmp_path, "adder", "lora", "builtin:addition")
    a2 = _finetune(registry, tmp_path, "reverser", "lora", "builtin:reversal")
    full = _finetune(registry, tmp_path, "full", "full", "builtin:addition")
    again = registry.register(tiny_dir, "base-prod")  # the same base under a second name

    weights = base.manifest["model.safetensors"]
    assert full.manifest["model.safetensors"]["sha256"] != weights["sha256"]  # new weights, really trained
    assert {a1.kind, a2.kind, full.kind} == {"adapter", "model"} and a1.base == a2.base == "base:1"
    # Files the full fine-tune shares with its base (tokenizer, generation config) are not stored twice.
    shared = sum(e["size"] for p, e in full.manifest.items() if base.manifest.get(p, {}).get("sha256") == e["sha256"])
    assert shared > 100_000  # tokenizer.json and friends
    usage = registry.artifacts.usage_bytes()
    logical = base.size_bytes + a1.size_bytes + a2.size_bytes + full.size_bytes + again.size_bytes
    unique = {e["sha256"]: e["size"] for v in (base, a1, a2, full, again) for e in v.manifest.values()}
    assert usage == sum(unique.values())  # every distinct file exactly once, nothing else
    # The second name adds nothing; the full fine-tune adds only its new weights and config.
    assert usage <= base.size_bytes + a1.size_bytes + a2.size_bytes + full.size_bytes - shared
    assert usage < logical - again.size_bytes
    blobs = registry.artifacts.all_blobs()
    assert blobs[weights["sha256"]] == weights["size"]  # the base weights: one blob, referenced by two versions
    assert sum(1 for size in blobs.values() if size == weights["size"]) == 2  # base + the full fine-tune only
    # Adapters are tiny next to the base they reference.
    assert a1.size_bytes < 0.1 * base.size_bytes and a2.size_bytes < 0.1 * base.size_bytes
    print(f"\nbase {base.size_bytes} B, adapters {a1.size_bytes} B + {a2.size_bytes} B, full {full.size_bytes} B, "
          f"second base name {again.size_bytes} B: logical {logical} B, stored {usage} B")
