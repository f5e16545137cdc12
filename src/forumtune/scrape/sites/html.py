"""Reading forum HTML: a node's text with its line breaks, dates in any common forum format, links."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import urljoin

from dateutil import parser as date_parser
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

BLOCK_TAGS = {"p", "div", "br", "li", "blockquote", "tr", "h1", "h2", "h3", "h4"}
HIDDEN_TAGS = {"script", "style", "noscript", "template"}  # code and styling inside a post, never its words
HIDDEN = ", ".join(sorted(HIDDEN_TAGS))
DATE_ATTRIBUTES = ("datetime", "data-time", "data-timestamp", "title")
# Forum dates hide inside prose ("« Reply #3 on: January 07, 2019, 07:50:49 PM »"); pick out the date first.
DATE_IN_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|(?:today|yesterday|[A-Z][a-z]{2,8}\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}|\d{1,2}(?:st|nd|rd|th)? [A-Z][a-z]{2,8}\.? \d{4}"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{4}-\d{2}-\d{2})"
    r"(?:,? (?:at )?\d{1,2}:\d{2}(?::\d{2})? ?(?:[AaPp]\.?[Mm]\.?)?)?",
    re.IGNORECASE,
)
EPOCH = re.compile(r"^\d{9,11}$")


def node_text(node: Node) -> str:
    """Text of a node with <br> and block elements turned into line breaks."""
    for br in node.css("br"):
        br.replace_with("\n")
    parts: list[str] = []
    for child in node.iter(include_text=True):
        if child.tag == "-text":
            parts.append(child.text(deep=False))
        elif child.tag in HIDDEN_TAGS:
            continue
        elif child.tag in BLOCK_TAGS:
            parts.append("\n" + node_text(child) + "\n")
        elif child.child is not None and child.css_first(HIDDEN) is not None:  # inline with a <style> inside
            parts.append(node_text(child))
        else:
            parts.append(child.text(deep=True, separator=""))
    return "".join(parts)


def drop_all(root: Node, selector: str, *, keep_root: bool = False) -> None:
    """Remove every element under root that matches selector. Only the outermost matches are removed:
    removing one frees what it contains, so a nested match must never be touched afterwards."""
    outermost: dict[int, Node] = {}
    for node in root.css(selector):
        if keep_root and node.mem_id == root.mem_id:
            continue
        ancestor = node.parent
        while ancestor is not None and ancestor.mem_id != root.mem_id and ancestor.mem_id not in outermost:
            ancestor = ancestor.parent
        if ancestor is None or ancestor.mem_id not in outermost:
            outermost[node.mem_id] = node
    for node in outermost.values():
        node.decompose()


def parse_date(value: str | None, *, now: datetime | None = None) -> str | None:
    """An ISO 8601 UTC timestamp from a forum's date (ISO, Unix time, or prose like "Jan 7th 2019, 7:50 pm")."""
    value = (value or "").strip()
    if not value:
        return None
    if EPOCH.match(value):
        return datetime.fromtimestamp(int(value), UTC).isoformat()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _parse_prose_date(value, now)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _parse_prose_date(value: str, now: datetime | None) -> str | None:
    match = DATE_IN_TEXT.search(value)
    if match is None:
        return None
    text = match.group(0)
    now = now or datetime.now(UTC)
    for word, days in (("today", 0), ("yesterday", 1)):
        if text.lower().startswith(word):
            day = (now - timedelta(days=days)).strftime("%Y-%m-%d")
            text = day + text[len(word) :]
    try:
        parsed = date_parser.parse(text.replace(" at ", " "), fuzzy=True)
    except (ValueError, OverflowError):
        return None
    if parsed.tzinfo is None:  # a forum's local time; UTC is the best guess without its settings
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


def element_date(node: Node | None) -> str | None:
    """The date an element shows: from its machine-readable attributes first, else from its text."""
    if node is None:
        return None
    for attribute in DATE_ATTRIBUTES:
        parsed = parse_date(node.attributes.get(attribute))
        if parsed:
            return parsed
    return parse_date(" ".join(node.text(separator=" ").split()))


@cache
def selector_alternatives(selector: str) -> tuple[str, ...]:
    """The selectors of a comma-separated list, split at the top level only (not in :is(a, b) or [x="a,b"])."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for index, char in enumerate(selector):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(selector[start:index])
            start = index + 1
    parts.append(selector[start:])
    return tuple(part.strip() for part in parts if part.strip())


def first_preferred(node: Node, selector: str | None) -> Node | None:
    """The first element the list's first matching alternative finds: "p.author time, p.author" means a
    <time> if there is one, else the paragraph, where CSS returns whichever comes first in the page."""
    for alternative in selector_alternatives(selector) if selector else ():
        if (found := node.css_first(alternative)) is not None:
            return found
    return None


def first_text(node: Node, selector: str | None) -> str | None:
    """The text of the first element selector finds, on one line, as a browser shows it: inline markup joins
    its words ("<b>+</b>Raze" is "+Raze", a subscriber's mark on IPS), block markup parts them."""
    found = node.css_first(selector) if selector else None
    text = node_text(found) if found is not None else ""
    return " ".join(text.split()) or None


def link_target(node: Node | None, page_url: str) -> str | None:
    href = node.attributes.get("href") if node is not None else None
    return urljoin(page_url, href.strip()) if href and href.strip() else None


def links_in(node: Node, page_url: str) -> list[str]:
    return [url for a in node.css("a[href]") if (url := link_target(a, page_url))]


def document_base(tree: HTMLParser, page_url: str) -> str:
    """The address a page's relative links are resolved against: its <base href>, else its own URL."""
    base = tree.css_first("base[href]")
    href = (base.attributes.get("href") or "").strip() if base is not None else ""
    return urljoin(page_url, href) if href else page_url
