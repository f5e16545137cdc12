"""`forumtune scrape CONFIG --probe URL --suggest`: CSS selectors for a forum no profile reads.

A thread page repeats one block per post, and each block holds a date, an author and the words; a
thread list repeats one row per thread, each with a link to its thread. The suggestion finds that
repeated block (the most numerous repeated element that carries a date, the outermost of equals),
then inside it the parts every post has: the deepest element holding most of the words (the body),
a short text that changes between posts (the author), a date, quotes and a signature. Everything is
judged by what the `generic` profile would extract with the selector, so the block printed reads
the page the way the test against it measured. The repeated blocks are found in suggest_blocks.py and
the parts inside a post told apart in suggest_parts.py; this module puts them together for a thread page
or a thread list.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.html import element_date
from forumtune.scrape.suggest_blocks import (
    Page,
    contains,
    depth,
    element_keys,
    first_texts,
    relative_keys,
    text_length,
)
from forumtune.scrape.suggest_parts import (
    EDIT_NOTE,
    QUOTE_HEADER,
    pick_author,
    pick_body,
    pick_date,
    pick_parts,
    pick_quote,
    pick_signature,
    pick_title,
)

NEXT_WORDS = {"next", "next »", "next ›", "next >", "»", "›", ">", "next page"}
TODO = "TODO"  # what a suggestion from one kind of page cannot know about the other


@dataclass
class Suggestion:
    page_kind: str  # "thread page" or "thread list"
    selectors: SiteSelectors
    notes: list[str] = field(default_factory=list)


def pick_next(tree: HTMLParser) -> str | None:
    if tree.css_first("a[rel=next]") is not None:
        return "a[rel=next]"
    for node in tree.css("a[href]"):
        text = " ".join(node.text(separator=" ").split()).lower()
        classes = [key for key in element_keys(node) if "next" in key.lower()]
        if classes:
            return classes[0]
        if text in NEXT_WORDS:
            parent = node.parent
            if parent is not None and any("next" in key.lower() for key in element_keys(parent)):
                return f"{next(key for key in element_keys(parent) if 'next' in key.lower())} a"
    link = tree.css_first("link[rel=next]")
    if link is not None and "prev_next" not in (link.attributes.get("href") or ""):  # SMF: the next topic
        return "link[rel=next]"
    if tree.css_first("strong + a[href]") is not None and tree.css_first("[class*=pag] strong + a[href]"):
        return "[class*=pag] strong + a[href]"
    return None


def suggest_thread_page(page: Page) -> Suggestion | None:
    blocks = page.repeated_blocks(dated=True)
    blocks = [
        (key, members)
        for key, members in blocks
        if statistics.mean(text_length(member) for member in members) >= 40
    ]
    if not blocks:
        return None
    most = max(len(members) for _, members in blocks)  # the posts, or a block repeated in each post
    key, members = max(
        (block for block in blocks if len(block[1]) >= 0.6 * most),
        key=lambda block: (sum(text_length(m) for m in block[1]), -depth(block[1][0])),
    )
    keys = relative_keys(members)
    body = None
    for _ in range(2):  # again with only the blocks that have the body: a class may also wrap other things
        date, author, title = pick_date(members, keys), pick_author(members, keys), pick_title(members, keys)
        signature = pick_signature(members, keys)
        body = pick_body(members, keys, [date, author, title, signature])
        if body is None:
            return None
        members = [member for member in members if member.css_first(body) is not None]
    quote = pick_quote(members, body)
    remove = pick_parts(members, keys, body, QUOTE_HEADER) + pick_parts(members, keys, body, EDIT_NOTE)
    title = page.tree.css_first("h1")
    selectors = SiteSelectors(
        thread_row=TODO,
        thread_link=TODO,
        next_page=pick_next(page.tree),
        thread_title=(element_keys(title) or ["h1"])[0] if title is not None else None,
        post=key,
        post_id_attribute="id",
        post_author=author,
        post_date=date,
        post_body=body,
        quote=quote,
        signature=signature,
        remove=[part for part in remove if part != quote and f"> {part})" not in (quote or "")],
    )
    return Suggestion("thread page", selectors, [f"{len(members)} posts repeat as {key}"])


def suggest_thread_list(page: Page) -> Suggestion | None:
    best: tuple[tuple[int, int, int], str, str, list[Node]] | None = None
    for key, members in page.repeated_blocks(dated=False):
        for link in [k for k in relative_keys(members) if k.endswith(" a") or k.startswith("a")]:
            nodes = [member.css_first(link) for member in members]
            hrefs = [node.attributes.get("href") for node in nodes if node is not None]
            texts = [text for text in first_texts(members, link) if text]
            if len(hrefs) < 0.9 * len(members) or len(set(hrefs)) < 0.9 * len(hrefs) or not texts:
                continue
            if len(set(texts)) < 0.9 * len(texts) or element_date(nodes[0]) is not None:
                continue  # thread titles differ; "Re: the title" on every post, or a date, is no thread link
            if statistics.median(len(text) for text in texts) < 5:
                continue
            rank = (len(members), int(statistics.median(len(text) for text in texts)), -depth(members[0]))
            if best is None or rank > best[0]:
                best = (rank, key, link, members)
    if best is None:
        return None
    _, row, link, members = best
    dates = [
        key
        for key in relative_keys(members)
        if sum(element_date(node) is not None for m in members if (node := m.css_first(key)))
        >= 0.5 * len(members)
    ]
    selectors = SiteSelectors(
        thread_row=row,
        thread_link=link,
        thread_last_post=dates[-1] if dates else None,
        next_page=pick_next(page.tree),
        post=TODO,
        post_body=TODO,
    )
    return Suggestion("thread list", selectors, [f"{len(members)} threads repeat as {row}"])


def suggest_selectors(html: str) -> Suggestion | None:
    """Selectors for the page: a thread page's post parts, or a thread list's rows; None if neither repeats."""
    page = Page(html)
    posts = suggest_thread_page(page)
    listing = suggest_thread_list(page)
    if posts is None or listing is None:
        return posts or listing
    rows = page.tree.css(listing.selectors.thread_row)
    blocks = page.tree.css(posts.selectors.post)
    if {row.mem_id for row in rows} & {block.mem_id for block in blocks}:
        # The same blocks read both ways: in a list, what reads as a post's words is mostly the thread's
        # title; a post's words are far more than any one of its links.
        titles = sum(len(text or "") for text in first_texts(rows, listing.selectors.thread_link))
        words = sum(len(text or "") for text in first_texts(blocks, posts.selectors.post_body))
        return listing if titles >= 0.3 * words else posts
    if any(contains(row, block) for row in rows for block in blocks[:3]):
        return posts  # "rows" that hold the posts are wrappers around the comment area, not threads
    # Posts, and a list of other threads beside them (or the other way round): the one with more words.
    post_words = sum(text_length(block) for block in blocks)
    return posts if post_words >= sum(text_length(row) for row in rows) else listing
