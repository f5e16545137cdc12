"""A site profile driven by CSS selectors: the HTML engines (and `generic`) are each a few sets of selectors.

An engine's markup changed across its versions (vBulletin 3.8's tables, 4's lists, 5's components), so
a profile holds one set of selectors per markup family, and each page is read with the set that finds
the most posts (or thread rows) on it.
"""

from __future__ import annotations

from dataclasses import replace

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from forumtune.config import SiteSelectors
from forumtune.forum_store import ScrapedPost, ThreadRef
from forumtune.scrape.models import ThreadListPage, ThreadPage
from forumtune.scrape.sites.html import (
    document_base,
    drop_all,
    element_date,
    first_preferred,
    first_text,
    link_target,
    links_in,
    node_text,
)
from forumtune.scrape.sites.signals import score_of, signal_elements, total_likes


class MarkupProfile:
    """Reads thread lists and thread pages of one forum engine's HTML through its selectors."""

    def __init__(self, name: str, *variants: SiteSelectors):
        self.name = name
        self.variants = variants  # one per markup family, the most common first: it wins a tie

    def list_url(self, url: str) -> str:
        return url

    def parse_thread_list(self, html: str, page_url: str) -> ThreadListPage:
        tree = HTMLParser(html)
        page_url = document_base(tree, page_url)
        s = max(
            self.variants,
            key=lambda v: sum(row.css_first(v.thread_link) is not None for row in tree.css(v.thread_row)),
        )
        threads = [ref for row in tree.css(s.thread_row) if (ref := self.thread_ref(row, page_url, s))]
        return ThreadListPage(threads=threads, next_url=self.next_url(tree, page_url, s))

    def parse_thread_page(self, html: str, page_url: str) -> ThreadPage:
        tree = HTMLParser(html)
        page_url = document_base(tree, page_url)
        s = max(
            self.variants,
            key=lambda v: sum(node.css_first(v.post_body) is not None for node in tree.css(v.post)),
        )
        posts = [post for node in tree.css(s.post) if (post := self.parse_post(node, page_url, s))]
        posts = with_zero_signals(posts)
        title = first_text(tree.root, s.thread_title) if tree.root is not None else None
        return ThreadPage(title=title, posts=posts, next_url=self.next_url(tree, page_url, s))

    def next_url(self, tree: HTMLParser, page_url: str, s: SiteSelectors) -> str | None:
        if not s.next_page:
            return None
        return link_target(first_preferred(tree.root, s.next_page) if tree.root else None, page_url)

    def thread_ref(self, row: Node, page_url: str, s: SiteSelectors) -> ThreadRef | None:
        link = row.css_first(s.thread_link)  # lexbor's css_first also tries the row itself
        url = link_target(link, page_url)
        if link is None or url is None:
            return None
        last_post = first_preferred(row, s.thread_last_post)
        return ThreadRef(
            url=url,
            title=" ".join(link.text(separator=" ").split()),
            external_id=row.attributes.get("data-thread-id") or row.attributes.get("id"),
            last_post_at=element_date(last_post),
            replies=first_text(row, s.thread_replies),
        )

    def parse_post(self, node: Node, page_url: str, s: SiteSelectors) -> ScrapedPost | None:
        if s.deleted and node.css_first(s.deleted) is not None:
            return None
        body = node.css_first(s.post_body)
        if body is None:
            return None
        likes = total_likes(signal_elements(node, s.post_likes))
        score = score_of(next(iter(signal_elements(node, s.post_score)), None))
        accepted = bool(signal_elements(node, s.post_accepted)) if s.post_accepted else None
        signature = node.css_first(s.signature) if s.signature else None
        # vBulletin 3 opens a signature with a line of underscores: a separator, not the member's words.
        signature_text = node_text(signature).strip().lstrip("_").strip() if signature is not None else None
        removable = ", ".join([*s.remove, *([s.signature] if s.signature else [])])
        if removable:
            drop_all(body, removable)
        quotes: list[str] = []
        # The first quote in document order is always an outer one. What it quoted in turn is dropped:
        # a quote keeps the words of the post it quotes, so the dataset can tell whom a reply answers.
        while s.quote and (quote := body.css_first(s.quote)) is not None:
            drop_all(quote, s.quote, keep_root=True)
            quotes.append(node_text(quote).strip())
            quote.decompose()
        return ScrapedPost(
            external_id=self.post_id(node, body, s),
            author=first_text(node, s.post_author),
            posted_at=element_date(first_preferred(node, s.post_date)),
            text=node_text(body).strip(),
            quotes=[quote for quote in quotes if quote],
            signature=signature_text or None,
            links=links_in(body, page_url),
            likes=likes,
            score=score,
            accepted=accepted,
        )

    def post_id(self, node: Node, body: Node, s: SiteSelectors) -> str | None:
        attribute = s.post_id_attribute
        if not attribute:
            return None
        return node.attributes.get(attribute) or body.attributes.get(attribute)


def with_zero_signals(posts: list[ScrapedPost]) -> list[ScrapedPost]:
    """Forums show a like count or a score only once there is one: where some post of the page shows
    it, the others have none (0) rather than an unknown (None)."""
    has_likes = any(post.likes is not None for post in posts)
    has_score = any(post.score is not None for post in posts)
    if not (has_likes or has_score):
        return posts
    return [
        replace(
            post,
            likes=0 if has_likes and post.likes is None else post.likes,
            score=0 if has_score and post.score is None else post.score,
        )
        for post in posts
    ]
