"""The repetition penalty that eval and chat decode with, on the answer's own tokens only.

transformers' `repetition_penalty` (CTRL's) divides the logit of every token already in the sequence,
the prompt included. In a chat prompt that means the end-of-turn token (`<|im_end|>`, `</s>`) that closes
the system and user turns, and the question's own words: the model is pushed away from ending its answer
and from the words it was asked about, and rambles on (measured on the demo: benchmarks/RESULTS.md).
Loops are repeats of the answer's own tokens, so only those are penalised here.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor


def penalise(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's rule: positive logits divided by `penalty`, negative ones multiplied, for each seen token."""
    picked = scores.gather(1, seen)
    return scores.scatter(1, seen, torch.where(picked < 0, picked * penalty, picked / penalty))


class AnswerRepetitionPenalty(LogitsProcessor):
    """For model.generate: penalise the tokens generated after `prompt_length` (the padded prompt width)."""

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = penalty
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        answer = input_ids[:, self.prompt_length :]
        if answer.shape[1] == 0 or self.penalty == 1.0:
            return scores
        return penalise(scores, answer, self.penalty)


def numpy_answer_penalty(penalty: float, prompt_length: int):
    """The same rule as a llama-cpp-python logits processor (input ids and scores as numpy arrays)."""

    def process(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        answer = np.unique(input_ids[prompt_length:])
        if answer.size == 0 or penalty == 1.0:
            return scores
        scores = scores.copy()
        picked = scores[answer]
        scores[answer] = np.where(picked < 0, picked * penalty, picked / penalty)
        return scores

    return process
