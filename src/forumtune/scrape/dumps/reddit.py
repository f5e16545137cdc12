"""Reddit archives in the Pushshift layout: JSON lines of submissions (`title`, `selftext`) and of
comments (`body`, `link_id` t3_<submission>, `parent_id` t1_<comment> or t3_<submission>), each with
`id`, `author`, `created_utc` and `score`.

A submission becomes a thread whose first post is its self text; its comments follow in the order of
the file (Pushshift writes them by time). A reply to another comment keeps that comment's words as its
quote, which is how the build tells whom a reply answers. Give the submissions before the comments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from forumtune.forum_store import ScrapedPost
from forumtune.scrape.dumps.writer import DumpPost, DumpRow, DumpThread
from forumtune.scrape.sites.html import parse_date

GONE = {"[deleted]", "[removed]", ""}
QUOTE_LINE = re.compile(r"^&gt;|^>")
URL = re.compile(r"https?://\S+")


def thread_url(submission_id: str) -> str:
    return f"reddit:comments/{submission_id}"


def split_quotes(markdown: str) -> tuple[str, list[str]]:
    """Markdown's "> " lines are quotes: kept apart from the comment's own words."""
    own, quoted = [], []
    for line in markdown.replace("&amp;", "&").splitlines():
        if QUOTE_LINE.match(line):
            quoted.append(QUOTE_LINE.sub("", line).strip())
        else:
            own.append(line)
    quote = " ".join(line for line in quoted if line)
    return "\n".join(own).strip(), [quote] if quote else []


def to_post(item: dict, text: str) -> ScrapedPost:
    words, quotes = split_quotes(text)
    author = item.get("author")
    score = item.get("score")
    return ScrapedPost(
        external_id=f"t1_{item['id']}" if "body" in item else f"t3_{item['id']}",
        author=None if author in (None, "[deleted]") else author,
        posted_at=parse_date(str(item.get("created_utc") or "")),
        text=words,
        quotes=quotes,
        links=URL.findall(words),
        score=int(score) if isinstance(score, int | float) else None,
    )


def read_jsonl(path: Path) -> Iterator[tuple[int, DumpRow | str]]:
    """(bytes read, row) for every line; a string says why a line is not stored."""
    with path.open("rb") as file:
        for line in iter(file.readline, b""):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                yield file.tell(), "bad_json"
                continue
            if "title" in item and "id" in item:  # a submission
                yield file.tell(), DumpThread(thread_url(item["id"]), item["id"], item["title"])
                selftext = item.get("selftext") or ""  # a link post has none: the title is the question
                yield (
                    file.tell(),
                    DumpPost(thread_url(item["id"]), to_post(item, "" if selftext in GONE else selftext)),
                )
            elif "body" in item and "link_id" in item:  # a comment
                if item["body"] in GONE:
                    yield file.tell(), "deleted"
                    continue
                parent = item.get("parent_id") or ""
                yield (
                    file.tell(),
                    DumpPost(
                        thread_url(item["link_id"].removeprefix("t3_")),
                        to_post(item, item["body"]),
                        parent_id=parent if parent.startswith("t1_") else None,
                    ),
                )
            else:
                yield file.tell(), "not_a_submission_or_comment"
