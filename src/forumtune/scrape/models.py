"""What a site profile extracts from a page: plain data, independent of any forum engine. The threads
and posts on a page are the forum store's records (forumtune.forum_store), which the build stage reads."""

from __future__ import annotations

from dataclasses import dataclass

from forumtune.forum_store import ScrapedPost, ThreadRef


@dataclass(frozen=True)
class ThreadListPage:
    threads: list[ThreadRef]
    next_url: str | None


@dataclass(frozen=True)
class ThreadPage:
    title: str | None
    posts: list[ScrapedPost]
    next_url: str | None
