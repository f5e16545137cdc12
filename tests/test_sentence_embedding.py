"""The onnxruntime path of SentenceEmbedder gives torch's vectors; without onnxruntime, torch runs."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from forumtune.sentence_embedding import SentenceEmbedder, bundled_model_dir
from forumtune.sentence_embedding_onnx import cached_graph_path, onnx_runtime_available
from tests.retrieval.reference import save_tiny_embedding_model

SENTENCES = (
    "how do i fix the carburettor idle screw when my engine stalls on a cold winter morning which oil "
    "suits a two stroke outboard motor and why do the rear brake pads squeal after rain"
)
WORDS = SENTENCES.split()
CPU = torch.device("cpu")
needs_onnx = pytest.mark.skipif(not onnx_runtime_available(), reason="the onnx extra is not installed")


def questions(count: int = 100) -> list[str]:
    """Short questions, 6 to 13 words, as users type them."""
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 13))) for _ in range(count)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_embedding_model(tmp_path_factory.mktemp("tiny-bert"), [SENTENCES])


def assert_same_vectors(model_dir: Path) -> None:
    onnx = SentenceEmbedder(model_dir, CPU)
    reference = SentenceEmbedder(model_dir, CPU, backend="torch")
    assert (onnx.backend, reference.backend) == ("onnx", "torch")
    texts = questions()
    expected = reference.embed(texts)
    one_by_one = torch.cat([onnx.embed([text]) for text in texts])  # a question at a time, as a search does
    batched = onnx.embed(texts, batch_size=16)  # padded batches, as `forumtune index` does
    for vectors in (one_by_one, batched):
        assert vectors.shape == expected.shape
        assert (vectors * expected).sum(dim=-1).min().item() >= 0.9999
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)


@needs_onnx
def test_onnx_vectors_equal_torch_vectors(tiny_model: Path) -> None:
    assert_same_vectors(tiny_model)


@needs_onnx
@pytest.mark.skipif(bundled_model_dir() is None, reason="the embeddings extra is not installed")
def test_onnx_vectors_equal_torch_vectors_for_minilm() -> None:
    assert_same_vectors(bundled_model_dir())


@needs_onnx
def test_graph_is_exported_once_and_again_for_new_weights(tiny_model: Path, tmp_path: Path) -> None:
    graph = cached_graph_path(tiny_model)
    SentenceEmbedder(tiny_model, CPU)
    exported = graph.stat().st_mtime_ns
    SentenceEmbedder(tiny_model, CPU)
    assert graph.stat().st_mtime_ns == exported  # the second embedder read the cached graph

    retrained = save_tiny_embedding_model(tmp_path / "retrained", [SENTENCES])
    assert cached_graph_path(retrained) != graph


def test_torch_runs_when_onnxruntime_is_missing(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when not installed
    embedder = SentenceEmbedder(tiny_model, CPU)
    assert embedder.backend == "torch"
    texts = questions(10)
    expected = SentenceEmbedder(tiny_model, CPU, backend="torch").embed(texts)
    assert torch.equal(embedder.embed(texts), expected)


def test_asking_for_onnx_without_it_names_the_extra(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ValueError, match=r"forumtune\[onnx\]"):
        SentenceEmbedder(tiny_model, CPU, backend="onnx")


@pytest.mark.skipif(not onnx_runtime_available(), reason="needs onnx and onnxruntime")
def test_auto_falls_back_to_torch_when_the_graph_cannot_be_cached(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache dir that is a file: no graph can be written there, so `auto` embeds with torch and says so,
    where `onnx`, asked for by name, fails."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache dir should be")
    monkeypatch.setenv("FORUMTUNE_CACHE_DIR", str(blocked))
    with pytest.warns(UserWarning, match="embedding with torch"):
        embedder = SentenceEmbedder(tiny_model, torch.device("cpu"), backend="auto")
    assert embedder.backend == "torch"
    assert embedder.embed(["how do I wax my skis"]).shape == (1, embedder.dimensions)
    with pytest.raises(OSError):
        SentenceEmbedder(tiny_model, torch.device("cpu"), backend="onnx")
