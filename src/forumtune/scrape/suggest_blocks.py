"""A page's repeated structure, as `--suggest` reads it (scrape/suggest.py): the selectors that name an
element by itself, the blocks the page repeats, none inside another, and the selectors of the parts
inside those blocks."""

from __future__ import annotations

import re
from collections import Counter

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from forumtune.scrape.sites.html import element_date

STABLE_CLASS = re.compile(r"^[A-Za-z_][A-Za-z_-]*$")  # no digits (bg1/bg2 alternate), nothing CSS must escape
ID_PREFIX = re.compile(r"^([A-Za-z][A-Za-z_-]*?[_-]?)\d+$")
BARE_KEYS = {"blockquote", "time", "h1", "h2", "cite"}  # tags meaningful without a class
PATH_TAGS = {"a", "strong", "b", "span", "h2", "h3", "h4", "h5", "time", "cite"}
SKIP_TAGS = {"html", "head", "body", "script", "style", "noscript", "img", "br", "svg", "form", "input"}


def element_keys(node: Node) -> list[str]:
    """The selectors that name this element by itself: its tag with each stable class, an id prefix."""
    keys = [
        f"{node.tag}.{name}"
        for name in (node.attributes.get("class") or "").split()
        if STABLE_CLASS.match(name)
    ]
    match = ID_PREFIX.match(node.attributes.get("id") or "")
    if match and (len(match.group(1)) >= 3 or match.group(1)[-1:] in "_-"):
        keys.append(f'{node.tag}[id^="{match.group(1)}"]')
    role = node.attributes.get("data-role") or ""
    if STABLE_CLASS.match(role):
        keys.append(f'{node.tag}[data-role="{role}"]')  # Invision names its parts this way
    if node.tag in BARE_KEYS:
        keys.append(node.tag)
    if not keys and node.tag in {"tr", "li"}:  # an unclassed row (SMF's message index): by its named cells
        keys += [
            f"{node.tag}:has(> {key})"
            for child in node.iter()
            if child.tag in {"td", "th", "div", "dl"}
            for key in element_keys(child)
            if ":" not in key
        ]
    return keys


def names(node: Node) -> str:
    return " ".join(node.attributes.get(name) or "" for name in ("class", "id", "data-role")).lower()


def text_length(node: Node) -> int:
    return len(" ".join(node.text(separator=" ").split()))


def is_date_node(node: Node) -> bool:
    if node.tag == "time" or "datetime" in node.attributes or "data-time" in node.attributes:
        return True
    text = " ".join(node.text(separator=" ").split())
    blocks = [
        inner for inner in node.css("div, p, li") if inner.mem_id != node.mem_id
    ]  # css() tries node too
    return 6 <= len(text) <= 60 and not blocks and element_date(node) is not None


def non_nested(members: list[Node]) -> bool:
    ids = {member.mem_id for member in members}
    for member in members:
        parent = member.parent
        while parent is not None:
            if parent.mem_id in ids:
                return False
            parent = parent.parent
    return True


def depth(node: Node) -> int:
    level, parent = 0, node.parent
    while parent is not None:
        level, parent = level + 1, parent.parent
    return level


def contains(outer: Node, node: Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id == outer.mem_id:
            return True
        parent = parent.parent
    return False


class Page:
    """The parsed page with what the search asks of it again and again, computed once."""

    def __init__(self, html: str):
        self.tree = HTMLParser(html)
        elements = (
            [node for node in self.tree.root.traverse() if node.tag not in SKIP_TAGS]
            if self.tree.root
            else []
        )
        self.dated: set[int] = set()  # elements that contain a date
        for node in elements:
            if is_date_node(node):
                parent: Node | None = node
                while parent is not None and parent.mem_id not in self.dated:
                    self.dated.add(parent.mem_id)
                    parent = parent.parent
        counts = Counter(key for node in elements for key in element_keys(node))
        self.groups = {key: self.tree.css(key) for key, count in counts.items() if 2 <= count <= 500}

    def repeated_blocks(self, *, dated: bool) -> list[tuple[str, list[Node]]]:
        """Elements repeated on the page, none inside another; with dated, only those carrying a date."""
        blocks = []
        inline = {"a", "span", "p", "strong", "b", "em", "time", "td"} | ({"tr"} if dated else set())
        for key, members in self.groups.items():
            if key.split(".")[0].split("[")[0].split(":")[0] in inline:
                continue
            if dated and sum(member.mem_id in self.dated for member in members) < 0.8 * len(members):
                continue
            if non_nested(members):
                blocks.append((key, members))
        return blocks


def relative_keys(members: list[Node]) -> list[str]:
    """Selectors for the parts of the blocks, each relative to a block: own keys, and "ancestor tag"
    for an unclassed link or heading (phpBB 3.0's author is `p.author strong a`)."""
    keys: dict[str, None] = {}
    for member in members[:30]:
        for node in member.traverse():
            if node.mem_id == member.mem_id or node.tag in SKIP_TAGS:
                continue
            own = element_keys(node)
            keys.update(dict.fromkeys(own))
            if not own and node.tag in PATH_TAGS:
                parent = node.parent
                while parent is not None and parent.mem_id != member.mem_id and not element_keys(parent):
                    parent = parent.parent
                if parent is not None and parent.mem_id != member.mem_id:
                    # by each of the ancestor's names: the one that says what the part is may be any
                    keys.update(dict.fromkeys(f"{key} {node.tag}" for key in element_keys(parent)))
    return list(keys)


def first_texts(members: list[Node], key: str) -> list[str | None]:
    found = [member.css_first(key) for member in members]
    return [" ".join(node.text(separator=" ").split()) if node is not None else None for node in found]
