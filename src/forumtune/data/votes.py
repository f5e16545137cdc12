"""Community votes in the build: which reply a thread's readers rated best, and what the build saw of votes.

A reply's standing is, in order: marked accepted (the asker's or a moderator's pick), its net score
where the forum has up/down votes, else its likes; an earlier reply wins a tie.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


class Voted(Protocol):
    position: int
    likes: int | None
    score: int | None
    accepted: bool | None


P = TypeVar("P", bound="Voted")


def has_votes(post: Voted) -> bool:
    return post.likes is not None or post.score is not None or post.accepted is not None


def vote_rank(post: Voted) -> tuple[int, int, int, int]:
    net = post.score if post.score is not None else (post.likes or 0)
    return (int(bool(post.accepted)), net, post.likes or 0, -post.position)


def best_voted(replies: Iterable[P]) -> P | None:
    """The reply readers rated best; None when no reply shows any vote (the forum has none)."""
    voted = [reply for reply in replies if has_votes(reply)]
    return max(voted, key=vote_rank) if voted else None


def mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


@dataclass
class VoteTally:
    """What `build` reports about votes: how many posts carry each signal, and the likes of the answers
    the dataset kept against those of every reply."""

    posts: int = 0
    likes: list[int] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)
    accepted: int = 0
    chosen_likes: list[int] = field(default_factory=list)

    def add_post(self, post: Voted) -> None:
        self.posts += 1
        if post.likes is not None:
            self.likes.append(post.likes)
        if post.score is not None:
            self.scores.append(post.score)
        self.accepted += bool(post.accepted)

    def posts_with_signals(self) -> int:
        return max(len(self.likes), len(self.scores), self.accepted)

    def add_answers(self, likes: Iterable[int | None]) -> None:
        self.chosen_likes += [value for value in likes if value is not None]

    def stats(self) -> dict[str, Any]:
        return {
            "posts_with_likes": len(self.likes),
            "posts_with_score": len(self.scores),
            "accepted_posts": self.accepted,
            "mean_likes": mean(self.likes),
            "mean_score": mean(self.scores),
            "answers_with_likes": len(self.chosen_likes),
            "mean_likes_of_answers": mean(self.chosen_likes),
        }
