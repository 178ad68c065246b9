"""Ray node descriptions -> llmos nodes and devices (pure; no cluster needed)."""

from __future__ import annotations

import pytest

from llmos.backends.ray_inventory import node_view, ray_resources

GiB = 2**30


def info(resources: dict[str, float], alive: bool = True, node_id: str = "ab" * 28) -> dict[str, object]:
    return {
        "NodeID": node_id,
        "Alive": alive,
        "NodeManagerAddress": "10.0.0.7",
        "NodeManagerHostname": "gpu-host-7",
        "Resources": resources,
    }


def test_gpus_are_typed_by_the_accelerator_marker() -> None:
    v = node_view(info({"CPU": 16, "GPU": 2, "accelerator_type:A100": 1, "memory": 64 * GiB}))
    gpus = v.node.devices_of_type("A100-80G")
    assert [d.id for d in gpus] == ["gpu0", "gpu1"] and [d.index for d in gpus] == [0, 1]
    # The marker describes the GPUs; it is not a third device.
    assert len([d for d in v.node.devices if d.type != "cpu"]) == 2
    assert ray_resources(v, ("gpu0", "gpu1", "cpu3")) == {"GPU": 2.0}
    assert v.node.cpus == 16 and v.node.memory_gib == 64
    assert v.node.labels["address"] == "10.0.0.7" and v.node.labels["hostname"] == "gpu-host-7"
    assert v.node.id == "ray-" + "ab" * 6 and v.ray_node_id == "ab" * 28


def test_custom_resources_advertise_device_types() -> None:
    v = node_view(info({"CPU": 2, "V100": 2, "memory": 4 * GiB, "object_store_memory": 1e8}))
    assert [d.id for d in v.node.devices_of_type("V100")] == ["v100-0", "v100-1"]
    assert ray_resources(v, ("v100-1",)) == {"V100": 1.0}
    marker_only = node_view(info({"CPU": 1, "accelerator_type:T4": 1, "memory": GiB}))
    assert [d.id for d in marker_only.node.devices_of_type("T4")] == ["t4-0"]
    assert ray_resources(marker_only, ("t4-0",)) == {"accelerator_type:T4": 1.0}
    # Both spellings of the same device on one node count once.
    both = node_view(info({"CPU": 1, "V100": 1, "accelerator_type:V100": 1, "memory": GiB}))
    assert len(both.node.devices_of_type("V100")) == 1


def test_cpu_devices_match_the_local_backend() -> None:
    v = node_view(info({"CPU": 3, "memory": 8 * GiB, "my_license": 4}))
    assert [d.id for d in v.node.devices] == ["cpu0", "cpu1", "cpu2"]  # unknown resources ignored
    assert all(d.memory_gib == 8 for d in v.node.devices)  # catalog's 16 GiB capped by the node's RAM
    assert ray_resources(v, ("cpu0", "cpu2")) == {}  # Ray does not pin cores
    assert len(node_view(info({"CPU": 3, "memory": GiB}), cpu_devices=1).node.devices) == 1
    with pytest.raises(KeyError, match="no device 'gpu0'"):
        ray_resources(v, ("gpu0",))


def test_dead_nodes_are_reported_not_alive() -> None:
    v = node_view(info({}, alive=False))
    assert v.node.alive is False and v.node.devices == () and v.node.cpus == 0
