"""Stack Exchange data dumps: `Posts.xml`, one <row> per question (PostTypeId 1) or answer (2), and
optionally `Comments.xml` after it (a comment joins its post's thread, quoting that post).

A question becomes a thread (its Title) whose first post is its Body; each answer is a post of its
question's thread with its Score, and the question's AcceptedAnswerId marks one answer accepted.
Bodies are HTML: <blockquote> is kept apart as a quote. Rows are read a chunk at a time (iterparse, each
element cleared once read), so memory holds a chunk and the ids of accepted answers still to come.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from forumtune.forum_store import ScrapedPost
from forumtune.scrape.dumps.writer import DumpAccepted, DumpComment, DumpPost, DumpRow, DumpThread
from forumtune.scrape.sites.html import drop_all, links_in, node_text, parse_date

QUESTION, ANSWER = "1", "2"
CHUNK_ROWS = 256  # rows whose bodies are parsed as one document


def thread_url(question_id: str) -> str:
    return f"stackexchange:questions/{question_id}"


def read_bodies(htmls: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """(own words, quotes, links) of each post's HTML body. Bodies are parsed many to one document:
    starting the HTML parser costs more than parsing a post; a body that breaks out of its wrapper
    (never seen in a dump, which stores well-formed HTML) sends the chunk back to one at a time."""
    tree = HTMLParser("".join(f'<div class="ft-body">{html}</div>' for html in htmls))
    wrappers = tree.css("body > div.ft-body")
    if len(wrappers) != len(htmls):
        return [read_bodies([html])[0] for html in htmls] if len(htmls) > 1 else [("", [], [])]
    return [read_body(wrapper) for wrapper in wrappers]


def read_body(body: Node) -> tuple[str, list[str], list[str]]:
    quotes = []
    while (quote := body.css_first("blockquote")) is not None:
        drop_all(quote, "blockquote", keep_root=True)
        quotes.append(node_text(quote).strip())
        quote.decompose()
    return (
        node_text(body).strip(),
        [quote for quote in quotes if quote],
        links_in(body, "https://stackexchange.com/"),
    )


def to_post(row: dict[str, str], body: tuple[str, list[str], list[str]]) -> ScrapedPost:
    text, quotes, links = body
    author = row.get("OwnerDisplayName") or (f"user{row['OwnerUserId']}" if row.get("OwnerUserId") else None)
    score = row.get("Score")
    return ScrapedPost(
        external_id=row["Id"],
        author=author,
        posted_at=parse_date(row.get("CreationDate")),
        text=text,
        quotes=quotes,
        links=links,
        score=int(score) if score else None,
        accepted=False if row.get("PostTypeId") == ANSWER else None,
    )


def read_rows(path: Path) -> Iterator[tuple[int, list[dict[str, str]]]]:
    """(bytes read, a chunk of <row> attributes) through Posts.xml, each element cleared once read."""
    chunk: list[dict[str, str]] = []
    with path.open("rb") as file:
        for _, element in ET.iterparse(file, events=("end",)):
            if element.tag == "row":
                chunk.append(dict(element.attrib))
                element.clear()
                if len(chunk) >= CHUNK_ROWS:
                    yield file.tell(), chunk
                    chunk = []
        yield file.tell(), chunk


def read_posts_xml(path: Path) -> Iterator[tuple[int, DumpRow | str]]:
    """(bytes read, row) for every <row> of Posts.xml; a string says why a row is not stored."""
    accepted: set[str] = set()  # answers that their question marked accepted, still to come
    for offset, chunk in read_rows(path):
        posts = [
            row
            for row in chunk
            if row.get("PostTypeId") == QUESTION or (row.get("PostTypeId") == ANSWER and row.get("ParentId"))
        ]
        bodies = dict(zip((row["Id"] for row in posts), read_bodies([row.get("Body", "") for row in posts])))
        for row in chunk:
            if row["Id"] not in bodies:
                yield offset, "not_a_question_or_answer"  # wiki excerpts, tag wikis, ...
            elif row["PostTypeId"] == QUESTION:
                if row.get("AcceptedAnswerId"):
                    accepted.add(row["AcceptedAnswerId"])
                yield offset, DumpThread(thread_url(row["Id"]), row["Id"], row.get("Title", ""))
                yield offset, DumpPost(thread_url(row["Id"]), to_post(row, bodies[row["Id"]]))
            else:
                yield offset, DumpPost(thread_url(row["ParentId"]), to_post(row, bodies[row["Id"]]))
                if row["Id"] in accepted:
                    accepted.discard(row["Id"])
                    yield offset, DumpAccepted(row["Id"])


def read_comments_xml(path: Path) -> Iterator[tuple[int, DumpRow | str]]:
    """(bytes read, row) for every <row> of Comments.xml: plain text, on the post PostId."""
    for offset, chunk in read_rows(path):
        for row in chunk:
            if not row.get("PostId") or not row.get("Text"):
                yield offset, "empty_comment"
                continue
            author = row.get("UserDisplayName") or (f"user{row['UserId']}" if row.get("UserId") else None)
            score = row.get("Score")
            post = ScrapedPost(
                external_id=f"comment{row['Id']}",
                author=author,
                text=row["Text"].strip(),
                posted_at=parse_date(row.get("CreationDate")),
                score=int(score) if score else None,
            )
            yield offset, DumpComment(row["PostId"], post)


def read_dump_file(path: Path) -> Iterator[tuple[int, DumpRow | str]]:
    """Posts.xml or Comments.xml, told apart by the file's root element."""
    with path.open("rb") as file:
        head = file.read(512)
    return read_comments_xml(path) if b"<comments" in head else read_posts_xml(path)
