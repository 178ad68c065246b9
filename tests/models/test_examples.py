"""The quickstart's job specs parse and reference what exists (configs, datasets, task names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.core.jobs import EvalSpec, FinetuneSpec, TrainSpec, parse_job_text
from llmos.core.memory import FAMILY_SHAPES
from llmos.models.datasets import validate_dataset
from llmos.runtime.evaluation import check_eval_tasks

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


@pytest.mark.parametrize("name", ["pretrain.yaml", "eval-before.yaml", "finetune.yaml", "eval-after.yaml"])
def test_quickstart_specs_are_valid(name: str) -> None:
    spec = parse_job_text((QUICKSTART / name).read_text())
    if isinstance(spec, TrainSpec):
        validate_dataset(spec.dataset)
    if isinstance(spec, TrainSpec) and not isinstance(spec, FinetuneSpec):
        assert spec.model in FAMILY_SHAPES
    if isinstance(spec, EvalSpec):
        assert check_eval_tasks(spec.tasks) == ["perplexity", "addition"]
