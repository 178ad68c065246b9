"""Fixtures of the models tests: a real registry (SQLite + artifact store) in a tmp home."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.models.family import create_model_dir
from llmos.models.registry import ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry.open(tmp_path / "home")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_model_dir("llmos-tiny", tmp_path_factory.mktemp("tiny") / "m", seed=0)
