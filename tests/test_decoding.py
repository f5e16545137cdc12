"""The repetition penalty on the answer's own tokens: the same rule for transformers and llama.cpp, and the
prompt's tokens (its end-of-turn token above all) left alone."""

import numpy as np
import torch

from forumtune.decoding import AnswerRepetitionPenalty, numpy_answer_penalty


def test_only_the_answers_tokens_are_penalised_by_ctrls_rule():
    scores = torch.tensor([[2.0, -1.0, 4.0, 0.5, 3.0]])
    prompt_then_answer = torch.tensor([[4, 3, 2, 1, 2]])  # prompt: 4, 3 (the end of turn); answer: 2, 1, 2
    processed = AnswerRepetitionPenalty(2.0, prompt_length=2)(prompt_then_answer, scores.clone())
    assert processed.tolist() == [[2.0, -2.0, 2.0, 0.5, 3.0]]
    unchanged = AnswerRepetitionPenalty(2.0, prompt_length=5)(prompt_then_answer, scores.clone())
    assert torch.equal(unchanged, scores)


def test_llama_cpp_version_computes_the_same():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(1, 50, generator=generator)
    ids = torch.randint(0, 50, (1, 30), generator=generator)
    expected = AnswerRepetitionPenalty(1.3, prompt_length=12)(ids, scores.clone())
    got = numpy_answer_penalty(1.3, prompt_length=12)(ids[0].numpy(), scores[0].numpy())
    np.testing.assert_allclose(got, expected[0].numpy(), rtol=1e-6)
