"""Cheap overlap metrics between a generated answer and the forum's real answer.

Both count shared words (lower-cased, punctuation dropped), so they reward saying what the forum
poster said in the same words. A correct answer in other words scores low, and one forum reply is
only one of many good answers: read them as a trend over many questions, never as correctness.
"""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"\w+")

METRIC_LIMITS = (
    "Token F1 and ROUGE-L count words shared with the forum's answer (F1: as a bag of words; ROUGE-L: in "
    "the same order, via the longest common subsequence). They reward wording, not correctness: a right "
    "answer phrased differently scores low, a fluent wrong one that reuses the question's words can score "
    "well, and one forum reply is only one of many valid answers. Embedding similarity (when a local "
    "sentence-embedding model is available) is the cosine between sentence vectors: it tells whether an "
    "answer is on the same topic, not whether it is right. Compare base and fine-tuned on the same "
    "questions; the absolute numbers mean little."
)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _f_measure(overlap: int, candidate_len: int, reference_len: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / candidate_len, overlap / reference_len
    return 2 * precision * recall / (precision + recall)


def token_f1(candidate: str, reference: str) -> float:
    """SQuAD-style F1 over the multiset of words."""
    cand, ref = words(candidate), words(reference)
    overlap = sum((Counter(cand) & Counter(ref)).values())
    return _f_measure(overlap, len(cand), len(ref))


def longest_common_subsequence(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for item in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if item == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) over words."""
    cand, ref = words(candidate), words(reference)
    return _f_measure(longest_common_subsequence(cand, ref), len(cand), len(ref))
