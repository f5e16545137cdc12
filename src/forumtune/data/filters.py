"""Dataset-wide filters: exact and near-duplicate answers (MinHash LSH), token lengths."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from datasketch import MinHash, MinHashLSH

from forumtune.data.encode import EncodedExample
from forumtune.data.pairing import Conversation
from forumtune.data.posts import normalize

MINHASH_PERMUTATIONS = 64
SHINGLE_WORDS = 3
WORDS = re.compile(r"\w+")


def shingles(text: str) -> set[bytes]:
    """Overlapping word 3-grams: two answers sharing most of them say the same thing."""
    words = WORDS.findall(text.lower())
    if len(words) < SHINGLE_WORDS:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}


class NearDuplicateIndex:
    """Answers seen so far; `seen_similar` says whether a new one is within the Jaccard threshold of one."""

    def __init__(self, threshold: float):
        self.lsh = MinHashLSH(threshold=threshold, num_perm=MINHASH_PERMUTATIONS)
        self.template = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=1)
        self.count = 0

    def seen_similar(self, text: str) -> bool:
        signature = MinHash(
            num_perm=MINHASH_PERMUTATIONS,
            permutations=self.template.permutations,
            scheme=self.template.scheme,
        )
        signature.update_batch(list(shingles(text)))
        if self.lsh.query(signature):
            return True
        self.lsh.insert(str(self.count), signature)
        self.count += 1
        return False


def drop_duplicates(
    conversations: list[Conversation], *, exact: bool, near_threshold: float | None, filtered: Counter[str]
) -> list[Conversation]:
    """Keep the first conversation of each answer; later exact or near copies (reposts, spam) go."""
    seen: set[bytes] = set()
    index = NearDuplicateIndex(near_threshold) if near_threshold is not None else None
    kept = []
    for conversation in conversations:
        answer = "\n".join(conversation.answers)
        digest = hashlib.blake2b(normalize(answer).encode(), digest_size=16).digest()
        if exact and digest in seen:
            filtered["exact_duplicate"] += 1
            continue
        seen.add(digest)
        if index is not None and index.seen_similar(answer):
            filtered["near_duplicate"] += 1
            continue
        kept.append(conversation)
    return kept


def fit_length(
    example: EncodedExample, *, max_seq_len: int, min_answer_tokens: int, filtered: Counter[str]
) -> EncodedExample | None:
    """The example cut to max_seq_len at an answer's end, or None (counted) when it cannot be used."""
    if min(example.answer_tokens) < min_answer_tokens:
        filtered["short_answer_tokens"] += 1
        return None
    fitted = example.cut(max_seq_len)
    if fitted is None:
        filtered["too_long"] += 1
    elif fitted is not example:
        filtered["turns_cut_to_fit"] += len(example.answer_spans) - len(fitted.answer_spans)
    return fitted
