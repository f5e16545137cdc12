"""Preference pairs from a question's replies, ranked by what the community signalled.

Every reply that can be an SFT answer (cleaned and filtered the same way) and shows a community signal
is a candidate. A reply's score is its net votes where the forum has up/down votes, else its likes;
a reply marked accepted ranks above every reply that is not. A pair is (better reply, worse reply):

- the better one is accepted and the worse one not, or its score is higher by build.preference_min_margin;
- never two replies of the same author (a pair would then compare a writer with themselves, and on
  forums that tells more about the thread's timing than about the answer);
- at most build.preference_pairs_per_question pairs per question, the widest margins first, so that
  one long thread does not outweigh the others.

What was not paired, and why, is counted in dataset/stats.json under `preferences.dropped`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from forumtune.data.votes import Voted, has_votes


@dataclass(frozen=True)
class ScoredReply:
    """A candidate answer and its community signal, whatever the forum or file it came from."""

    text: str
    score: float
    author: str | None = None
    accepted: bool = False
    position: int = 0  # the reply's place in its thread: the earlier reply wins a tie of margins


@dataclass(frozen=True)
class PreferencePair:
    thread_id: int | str
    prompt: list[dict[str, str]]
    chosen: ScoredReply
    rejected: ScoredReply


def community_score(post: Voted) -> float | None:
    """Net votes where the forum has them, else likes; None when the post shows no signal at all."""
    if not has_votes(post):
        return None
    return float(post.score if post.score is not None else (post.likes or 0))


def ranks_above(better: ScoredReply, worse: ScoredReply, min_margin: float) -> bool:
    if better.accepted != worse.accepted:
        return better.accepted
    return better.score - worse.score >= min_margin


def pair_replies(
    thread_id: int | str,
    prompt: list[dict[str, str]],
    replies: Iterable[ScoredReply],
    *,
    min_margin: float,
    max_pairs: int,
    dropped: Counter[str],
) -> list[PreferencePair]:
    """The pairs of one question by the rules above; `dropped` counts each candidate pair left out."""
    replies = list(replies)
    if len(replies) < 2:
        dropped["questions_with_fewer_than_2_voted_replies"] += 1
        return []
    candidates = []
    for first, second in combinations(replies, 2):
        better, worse = (first, second) if ranks_above(first, second, min_margin) else (second, first)
        if not ranks_above(better, worse, min_margin):
            dropped["margin_below_minimum"] += 1
        elif better.author is not None and better.author == worse.author:
            dropped["same_author"] += 1
        elif better.text.strip() == worse.text.strip():
            dropped["identical_answers"] += 1
        else:
            candidates.append((better, worse))
    candidates.sort(
        key=lambda pair: (
            -(pair[0].accepted - pair[1].accepted),
            -(pair[0].score - pair[1].score),
            pair[0].position,
            pair[1].position,
        )
    )
    if len(candidates) > max_pairs:
        dropped["over_pairs_per_question"] += len(candidates) - max_pairs
    return [PreferencePair(thread_id, prompt, better, worse) for better, worse in candidates[:max_pairs]]
