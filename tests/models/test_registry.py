"""Artifact store and registry: dedup, integrity, atomicity, GC, versions, tags, lineage, adapters."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from llmos.errors import Conflict, IntegrityError, NotFound, ValidationError
from llmos.models.artifacts import ArtifactStore
from llmos.models.family import create_model, create_model_dir
from llmos.models.registry import ModelRegistry
from llmos.runtime.trainer import TrainConfig, apply_lora, save_trained


def _adapter_dir(base_name: str, out: Path, seed: int, r: int = 4) -> Path:
    torch.manual_seed(seed)
    peft_model = apply_lora(create_model(base_name), TrainConfig(steps=1, method="lora", lora_r=r))
    with torch.no_grad():  # a trained-looking adapter: non-zero B so it changes outputs
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return save_trained(peft_model, out)


def test_versions_dedup_and_checkout_roundtrip(registry: ModelRegistry, tiny_dir: Path) -> None:
    v1 = registry.register(tiny_dir, "tiny", description="random init")
    v2 = registry.register(tiny_dir, "tiny-copy")
    assert (v1.ref, v2.ref, v1.kind) == ("tiny:1", "tiny-copy:1", "model")
    assert v1.manifest_digest == v2.manifest_digest
    blobs = registry.artifacts.all_blobs()
    # The same files under two names are stored once.
    assert sum(blobs.values()) == v1.size_bytes
    out = registry.path("tiny")
    for f in tiny_dir.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
    assert registry.resolve("tiny:latest").version == 1
    assert registry.resolve("tiny").info["architecture"]["hidden_size"] == 128


def test_tags_lineage_metrics_and_errors(registry: ModelRegistry, tiny_dir: Path, tmp_path: Path) -> None:
    registry.register(tiny_dir, "m")
    other = create_model_dir("llmos-tiny", tmp_path / "other", seed=1)
    v2 = registry.register(other, "m", parent="m:1", job_id="job-1", dataset="builtin:corpus")
    registry.tag("m:1", "production")
    assert registry.resolve("m:production").version == 1
    registry.tag("m:2", "production")  # moving a tag
    assert registry.resolve("m:production").version == 2
    assert [v.ref for v in registry.lineage("m:2")] == ["m:2", "m:1"]
    registry.record_metrics("m:2", {"perplexity": 12.5})
    assert registry.resolve("m:2").metrics == {"perplexity": 12.5}
    assert v2.job_id == "job-1" and registry.find_by_job("m", "job-1").ref == "m:2"
    with pytest.raises(NotFound):
        registry.resolve("nope")
    with pytest.raises(NotFound):
        registry.resolve("m:7")
    with pytest.raises(NotFound, match="no version or tag"):
        registry.resolve("m:staging")
    with pytest.raises(ValidationError):
        registry.resolve("bad name!")
    with pytest.raises(ValidationError, match="invalid tag"):
        registry.tag("m:1", "latest")
    registry.untag("m", "production")
    with pytest.raises(ValidationError, match=r"no config\.json"):
        registry.register(tmp_path, "x")


def test_integrity_check_on_load(registry: ModelRegistry, tiny_dir: Path) -> None:
    v = registry.register(tiny_dir, "m")
    digest = v.manifest["model.safetensors"]["sha256"]
    blob = registry.artifacts.blob_path(digest)
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        registry.path("m")
    with pytest.raises(IntegrityError):
        registry.artifacts.verify(registry.manifest(v))


def test_crash_mid_write_leaves_nothing_visible_and_gc_cleans(registry: ModelRegistry, tiny_dir: Path,
                                                              tmp_path: Path) -> None:
    store = registry.artifacts
    # A writer killed after copying blobs but before committing its version row:
    orphan_src = tmp_path / "orphan"
    orphan_src.mkdir()
    (orphan_src / "weights.bin").write_bytes(os.urandom(4096))
    store.put_dir(orphan_src)
    (store.tmp_dir / "dead.part").write_bytes(b"half a blob")
    assert registry.versions() == []
    v = registry.register(tiny_dir, "m")
    report = registry.gc(grace_s=0)
    assert report.removed_blobs == 1 and report.freed_bytes == 4096
    assert not list(store.tmp_dir.iterdir())
    registry.path("m")  # the live version is intact
    registry.delete("m:1")
    assert registry.gc(grace_s=0).freed_bytes == v.size_bytes
    assert store.usage_bytes() == 0


def test_adapters_reference_their_base_and_wrong_base_is_refused(registry: ModelRegistry, tiny_dir: Path,
                                                                 tmp_path: Path) -> None:
    registry.register(tiny_dir, "base")
    small = create_model_dir("llmos-small", tmp_path / "small", seed=0)
    registry.register(small, "small")
    a = registry.register(_adapter_dir("llmos-tiny", tmp_path / "a", 1), "adder", base="base:1")
    assert (a.kind, a.base, a.parent) == ("adapter", "base:1", "base:1")
    registry.check_adapter_for("adder:1", "base:1")
    with pytest.raises(ValidationError, match="trained for base base:1, not small:1"):
        registry.check_adapter_for("adder:1", "small:1")
    with pytest.raises(ValidationError, match="wrong base model"):
        registry.register(tmp_path / "a", "adder", base="small:1")
    with pytest.raises(ValidationError, match="needs its base"):
        registry.register(tmp_path / "a", "adder")
    with pytest.raises(Conflict, match="is the base of adder:1"):
        registry.delete("base:1")


def test_artifact_store_put_is_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("hello")
    m1, m2 = store.put_dir(src), store.put_dir(src)
    assert m1 == m2 and list(m1.files) == ["sub/a.txt"]
    co = store.checkout(m1)
    assert (co / "sub" / "a.txt").read_text() == "hello"
    shutil.rmtree(src)
    assert store.read_bytes(m1, "sub/a.txt") == b"hello"
