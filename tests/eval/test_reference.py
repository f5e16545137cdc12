"""Reference metrics against hand-counted examples, and embedding similarity with a tiny local model."""

import pytest
import torch

from forumtune.errors import EvalError
from forumtune.eval.embedding import SentenceEmbedder, embedding_similarities, find_embedding_model
from forumtune.eval.reference import rouge_l, token_f1


def test_token_f1_counts_shared_words_as_a_bag():
    # candidate: 4 words, reference: 5 words, shared: "wax", "the", "base" → P 3/4, R 3/5
    assert token_f1("Wax the base, friend", "wax THE base every week") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert token_f1("wax wax wax", "wax") == pytest.approx(0.5)  # one shared: P 1/3, R 1
    assert token_f1("", "wax") == 0.0 and token_f1("hello", "wax") == 0.0


def test_rouge_l_needs_the_same_order():
    # longest common subsequence "a c d" of 4 and 4 words → P = R = 3/4
    assert rouge_l("a b c d", "a c x d") == pytest.approx(0.75)
    assert rouge_l("d c b a", "a b c d") == pytest.approx(0.25)
    assert token_f1("d c b a", "a b c d") == pytest.approx(1.0)
    assert rouge_l("same words here", "Same words, here!") == pytest.approx(1.0)


def test_embedding_similarity_with_a_local_model(embedding_dir):
    embedder = SentenceEmbedder(find_embedding_model(str(embedding_dir)), torch.device("cpu"))
    same, different = embedding_similarities(
        embedder, ["wax the base", "wax the base"], ["wax the base", "helmet always falls on rails hurt"]
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= different < same


def test_embedding_model_setting():
    assert find_embedding_model(None) is None
    auto = find_embedding_model("auto")  # the optional package's weights, or None without it
    assert auto is None or (auto / "config.json").exists()
    with pytest.raises(EvalError, match="eval.embedding_model"):
        find_embedding_model("/nonexistent/model")
