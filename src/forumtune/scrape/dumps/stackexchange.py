"""Stack Exchange data dumps: `Posts.xml`, one <row> per question (PostTypeId 1) or answer (2).

A question becomes a thread (its Title) whose first post is its Body; each answer is a post of its
question's thread with its Score, and the question's AcceptedAnswerId marks one answer accepted.
Bodies are HTML: <blockquote> is kept apart as a quote. Rows are parsed one at a time (iterparse, each
element cleared once read), so memory holds only the ids of accepted answers still to come.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from forumtune.forum_store import ScrapedPost
from forumtune.scrape.dumps.writer import DumpAccepted, DumpPost, DumpRow, DumpThread
from forumtune.scrape.sites.html import drop_all, links_in, node_text, parse_date

QUESTION, ANSWER = "1", "2"


def thread_url(question_id: str) -> str:
    return f"stackexchange:questions/{question_id}"


def read_body(html: str) -> tuple[str, list[str], list[str]]:
    """(own words, quotes, links) of a post's HTML body."""
    body = HTMLParser(f"<div>{html}</div>").css_first("div")
    if body is None:
        return "", [], []
    quotes = []
    while (quote := body.css_first("blockquote")) is not None:
        drop_all(quote, "blockquote", keep_root=True)
        quotes.append(node_text(quote).strip())
        quote.decompose()
    return node_text(body).strip(), [quote for quote in quotes if quote], links_in(body, "https://stackexchange.com/")


def to_post(row: dict[str, str]) -> ScrapedPost:
    text, quotes, links = read_body(row.get("Body", ""))
    author = row.get("OwnerDisplayName") or (f"user{row['OwnerUserId']}" if row.get("OwnerUserId") else None)
    score = row.get("Score")
    return ScrapedPost(external_id=row["Id"], author=author, posted_at=parse_date(row.get("CreationDate")),
                       text=text, quotes=quotes, links=links, score=int(score) if score else None,
                       accepted=False if row.get("PostTypeId") == ANSWER else None)


def read_posts_xml(path: Path) -> Iterator[tuple[int, DumpRow | str]]:
    """(bytes read, row) for every <row> of Posts.xml; a string says why a row is not stored."""
    accepted: set[str] = set()  # answers that their question marked accepted, still to come
    with path.open("rb") as file:
        for _, element in ET.iterparse(file, events=("end",)):
            if element.tag != "row":
                continue
            row = dict(element.attrib)
            element.clear()
            kind = row.get("PostTypeId")
            if kind == QUESTION:
                if row.get("AcceptedAnswerId"):
                    accepted.add(row["AcceptedAnswerId"])
                yield file.tell(), DumpThread(thread_url(row["Id"]), row["Id"], row.get("Title", ""))
                yield file.tell(), DumpPost(thread_url(row["Id"]), to_post(row))
            elif kind == ANSWER and row.get("ParentId"):
                yield file.tell(), DumpPost(thread_url(row["ParentId"]), to_post(row))
                if row["Id"] in accepted:
                    accepted.discard(row["Id"])
                    yield file.tell(), DumpAccepted(row["Id"])
            else:
                yield file.tell(), "not_a_question_or_answer"  # wiki excerpts, tag wikis, ...
