"""The bundled demo forum's markup (a newschoolers-style layout): thread rows, posts, quotes, signatures."""

from __future__ import annotations

from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from forumtune.scrape.models import ScrapedPost, ThreadListPage, ThreadPage, ThreadRef

BLOCK_TAGS = {"p", "div", "br", "li", "blockquote", "tr", "h1", "h2", "h3", "h4"}


def node_text(node: Node) -> str:
    """Text of a node with <br> and block elements turned into line breaks."""
    for br in node.css("br"):
        br.replace_with("\n")
    parts: list[str] = []
    for child in node.iter(include_text=True):
        if child.tag == "-text":
            parts.append(child.text(deep=False))
        elif child.tag in BLOCK_TAGS:
            parts.append("\n" + node_text(child) + "\n")
        else:
            parts.append(child.text(deep=True, separator=""))
    return "".join(parts)


def _next_link(tree: HTMLParser, page_url: str) -> str | None:
    link = tree.css_first("nav.pagination a.page-next")
    href = link.attributes.get("href") if link else None
    return urljoin(page_url, href) if href else None


def _parse_post(node: Node, page_url: str) -> ScrapedPost:
    author_node = node.css_first(".post-author")
    date_node = node.css_first("time.post-date")
    body = node.css_first(".post-body")
    signature_node = node.css_first(".signature")
    quotes: list[str] = []
    links: list[str] = []
    text = ""
    if body is not None:
        links = [urljoin(page_url, a.attributes["href"]) for a in body.css("a[href]") if a.attributes["href"]]
        for quote in body.css("blockquote.quote"):
            if quote.parent is not None and quote.parent.tag == "div":
                quotes.append(node_text(quote).strip())
        for removable in body.css("blockquote.quote, div.mod-note"):
            removable.decompose()
        text = node_text(body).strip()
    return ScrapedPost(
        external_id=node.attributes.get("data-post-id"),
        author=author_node.text(strip=True) if author_node else None,
        posted_at=date_node.attributes.get("datetime") if date_node else None,
        text=text,
        quotes=quotes,
        signature=node_text(signature_node).strip() if signature_node else None,
        links=links,
    )


class DemoProfile:
    name = "demo"

    def parse_thread_list(self, html: str, page_url: str) -> ThreadListPage:
        tree = HTMLParser(html)
        threads = []
        for row in tree.css("li.thread-row"):
            link = row.css_first("a.thread-link")
            if link is None or not link.attributes.get("href"):
                continue
            starter = row.css_first(".thread-starter")
            threads.append(
                ThreadRef(
                    url=urljoin(page_url, link.attributes["href"]),
                    title=link.text(strip=True),
                    external_id=row.attributes.get("data-thread-id"),
                    starter=starter.text(strip=True) if starter else None,
                )
            )
        return ThreadListPage(threads=threads, next_url=_next_link(tree, page_url))

    def parse_thread_page(self, html: str, page_url: str) -> ThreadPage:
        tree = HTMLParser(html)
        title = tree.css_first("h1.thread-title")
        posts = [_parse_post(node, page_url) for node in tree.css("div.post")]
        return ThreadPage(
            title=title.text(strip=True) if title else None, posts=posts, next_url=_next_link(tree, page_url)
        )


PROFILE = DemoProfile()
