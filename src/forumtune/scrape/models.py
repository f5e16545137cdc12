"""What a site profile extracts from a page: plain data, independent of any forum engine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThreadRef:
    url: str
    title: str
    external_id: str | None = None
    starter: str | None = None
    last_post_at: str | None = None  # what the list says about the thread's activity: a change means new posts
    replies: str | None = None


@dataclass(frozen=True)
class ThreadListPage:
    threads: list[ThreadRef]
    next_url: str | None


@dataclass(frozen=True)
class ScrapedPost:
    external_id: str | None
    author: str | None
    posted_at: str | None
    text: str
    quotes: list[str] = field(default_factory=list)
    signature: str | None = None
    links: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ThreadPage:
    title: str | None
    posts: list[ScrapedPost]
    next_url: str | None
