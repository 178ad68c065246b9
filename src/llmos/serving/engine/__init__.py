"""The llmos serving engine: continuous batching over a paged KV cache, prefix caching,
multi-LoRA, in plain PyTorch. See docs/serving-engine.md."""

from llmos.serving.engine.config import EngineConfig, ModelConfig, SamplingParams
from llmos.serving.engine.engine import LLMEngine
from llmos.serving.engine.outputs import EngineStats, RequestOutput
from llmos.serving.engine.sequence import TokenLogprob

__all__ = [
    "EngineConfig",
    "EngineStats",
    "LLMEngine",
    "ModelConfig",
    "RequestOutput",
    "SamplingParams",
    "TokenLogprob",
]
