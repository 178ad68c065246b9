"""The gateway's replica choice (pure) and the deployment spec builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.api.openai.balancer import Balancer, BalancerConfig
from llmos.api.openai.replicas import Replica
from llmos.control.deployments import default_name, deployment_spec
from llmos.errors import ValidationError

A = Replica("j.0.1", "j", "chat", "http://a", ("lora",))
B = Replica("j.1.1", "j", "chat", "http://b", ("lora",))


def test_least_outstanding_then_stable_ties() -> None:
    bal = Balancer()
    assert bal.choose([A, B], "chat", None) is A
    bal.started(A, "chat", None)
    assert bal.choose([A, B], "chat", None) is B
    bal.started(B, "chat", None)
    bal.started(B, "chat", None)
    assert bal.choose([A, B], "chat", None) is A
    bal.finished(B)
    bal.finished(B)
    bal.finished(A)
    assert bal.outstanding == {}


def test_prefix_and_adapter_affinity_within_slack() -> None:
    bal = Balancer(BalancerConfig(prefix_chars=64, affinity_slack=1))
    key = bal.prefix_key("x" * 100)
    assert key is not None and bal.prefix_key("short") is None
    bal.started(B, "chat", key)  # B served this prefix
    bal.finished(B)
    assert bal.choose([A, B], "chat", key) is B
    bal.started(B, "chat", None)
    bal.started(B, "chat", None)  # B now 2 ahead of A: beyond the slack
    assert bal.choose([A, B], "chat", key) is A
    bal.started(A, "lora", None)  # adapter last served on A
    bal.finished(A)
    assert bal.choose([A, B], "lora", None) is A
    bal.forget(A)  # A died: its affinities go
    assert bal.choose([B], "lora", None) is B


def test_deployment_spec(tmp_path: Path) -> None:
    spec = deployment_spec("llmos-small:1", replicas=2, adapters=["adder:1"])
    assert spec["name"] == "llmos-small" and spec["replicas"] == 2 and spec["kind"] == "serve"
    assert spec["max_retries"] >= 10
    assert default_name(str(tmp_path)) == tmp_path.name
    local = deployment_spec(str(tmp_path), name="mine")
    assert local["model"] == str(tmp_path.resolve())
    with pytest.raises(ValidationError, match="replicas"):
        deployment_spec("m:1", replicas=0)
    with pytest.raises(ValidationError, match="model"):
        deployment_spec("../relative", name="x")
