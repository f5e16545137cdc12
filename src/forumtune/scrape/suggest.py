"""`forumtune scrape CONFIG --probe URL --suggest`: CSS selectors for a forum no profile reads.

A thread page repeats one block per post, and each block holds a date, an author and the words; a
thread list repeats one row per thread, each with a link to its thread. The suggestion finds that
repeated block (the most numerous repeated element that carries a date, the outermost of equals),
then inside it the parts every post has: the deepest element holding most of the words (the body),
a short text that changes between posts (the author), a date, quotes and a signature. Everything is
judged by what the `generic` profile would extract with the selector, so the block printed reads
the page the way the test against it measured.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from forumtune.config import SiteSelectors
from forumtune.scrape.sites.html import element_date

STABLE_CLASS = re.compile(r"^[A-Za-z_][A-Za-z_-]*$")  # no digits (bg1/bg2 alternate), nothing CSS must escape
ID_PREFIX = re.compile(r"^([A-Za-z][A-Za-z_-]*?[_-]?)\d+$")
BARE_KEYS = {"blockquote", "time", "h1", "h2", "cite"}  # tags meaningful without a class
PATH_TAGS = {"a", "strong", "b", "span", "h2", "h3", "h4", "h5", "time", "cite"}
SKIP_TAGS = {"html", "head", "body", "script", "style", "noscript", "img", "br", "svg", "form", "input"}
PROFILE_LINK = re.compile(r"member|user|profile|u=\d", re.IGNORECASE)
# Where guests get no profile links (Invision shows them the name as a bare <span>), the markup still
# says which short text is the author's: by a class such as cAuthorPane_author, not the member title's.
AUTHOR_NAMES = re.compile(r"author|user|poster|name", re.IGNORECASE)
QUOTE_HEADER = re.compile(
    r"^\s*(quote:|quote from|originally posted by|\S.{0,40} (wrote|said|writes|says)\b)", re.IGNORECASE
)
EDIT_NOTE = re.compile(
    r"^\s*(\(?last edited|edited|last edit|\(?this post was (last )?(modified|edited))", re.IGNORECASE
)
NEXT_WORDS = {"next", "next »", "next ›", "next >", "»", "›", ">", "next page"}
TODO = "TODO"  # what a suggestion from one kind of page cannot know about the other


@dataclass
class Suggestion:
    page_kind: str  # "thread page" or "thread list"
    selectors: SiteSelectors
    notes: list[str] = field(default_factory=list)


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


def pick_body(members: list[Node], keys: list[str], parts: list[str | None]) -> str | None:
    """The part with the most words that holds neither the date nor the author (nor is the signature);
    of parts about as long, the deepest (the post's own words, not a wrapper around them)."""
    scored = []
    for key in keys:
        nodes = [member.css_first(key) for member in members]
        if sum(node is not None for node in nodes) < 0.8 * len(members):
            continue
        if any("sig" in names(node) for node in nodes if node is not None):
            continue
        if any(
            node is not None and contains_part(node, member, part)
            for node, member in zip(nodes[:8], members[:8])
            for part in parts
            if part
        ):
            continue
        lengths = [text_length(node) if node is not None else 0 for node in nodes]
        first = next(node for node in nodes if node is not None)
        scored.append((statistics.median(lengths), depth(first), key))
    if not scored:
        return None
    longest = max(length for length, _, _ in scored)
    return max((item for item in scored if item[0] >= 0.9 * longest), key=lambda item: item[1])[2]


def contains_part(node: Node, member: Node, part: str) -> bool:
    found = member.css_first(part)
    while found is not None:
        if found.mem_id == node.mem_id:
            return True
        found = found.parent
    return False


def node_member(node: Node, members: list[Node]) -> Node:
    ids = {member.mem_id: member for member in members}
    parent: Node | None = node
    while parent is not None and parent.mem_id not in ids:
        parent = parent.parent
    return ids[parent.mem_id] if parent is not None else node


def pick_author(members: list[Node], keys: list[str]) -> str | None:
    """A short text in every post that changes between posts, best a link to a member's profile."""
    scored = []
    for key in keys:
        texts = first_texts(members, key)
        present = [text for text in texts if text]
        if len(present) < 0.8 * len(members) or element_date(members[0].css_first(key)) is not None:
            continue
        if statistics.median(len(text) for text in present) > 40 or any(
            char.isdigit() for char in present[0][:1]
        ):
            continue
        distinct = len(set(present)) / len(present)
        named = sum(names_a_member(node) for member in members if (node := member.css_first(key)) is not None)
        scored.append(
            (
                round(named / len(present), 1),
                AUTHOR_NAMES.search(key) is not None,
                len(present) == len(members),
                distinct > 0.2,
                -statistics.median(len(text) for text in present),
                key,
            )
        )
    return max(scored)[-1] if scored else None


def names_a_member(node: Node) -> bool:
    """A link to a member's profile, or an element whose words are just such a link's."""
    links = [node] if node.tag == "a" else node.css("a[href]")
    link = next((a for a in links if PROFILE_LINK.search(a.attributes.get("href") or "")), None)
    if link is None:
        return False
    return " ".join(link.text(separator=" ").split()) == " ".join(node.text(separator=" ").split())


def pick_date(members: list[Node], keys: list[str]) -> str | None:
    """The date every post shows: a <time> if there is one; of several dates, the one that differs
    most between posts and has a time of day (a member's join date repeats and has none)."""
    scored = []
    for key in keys:
        nodes = [member.css_first(key) for member in members]
        dates = [element_date(node) for node in nodes if node is not None]
        dates = [date for date in dates if date]
        if len(dates) < 0.8 * len(members):
            continue
        with_time = sum(not date.endswith("T00:00:00+00:00") for date in dates)
        scored.append((key.endswith("time") or key.startswith("time"), len(set(dates)), with_time, key))
    return max(scored)[-1] if scored else None


def pick_parts(members: list[Node], keys: list[str], body: str, pattern: re.Pattern[str]) -> list[str]:
    """Keys of short parts inside the body that say who is quoted or when it was edited: dropped."""
    found: dict[str, None] = {}
    for member in members:
        root = member.css_first(body)
        matching = [
            node
            for node in (root.traverse() if root is not None else [])
            if node.mem_id != root.mem_id and element_keys(node) and is_header(node, pattern)
        ]
        for node in matching:  # the innermost: a wrapper around the header and the quote is no header
            if not any(other.mem_id != node.mem_id and contains(node, other) for other in matching):
                found.setdefault(element_keys(node)[0], None)
    return list(found)


def is_header(node: Node, pattern: re.Pattern[str]) -> bool:
    text = " ".join(node.text(separator=" ").split())
    return bool(text) and len(text) < 100 and bool(pattern.match(text))


def contains(outer: Node, node: Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id == outer.mem_id:
            return True
        parent = parent.parent
    return False


def pick_quote(members: list[Node], body: str) -> str | None:
    counts: Counter[str] = Counter()
    blockquotes = 0
    for member in members:
        root = member.css_first(body)
        for node in root.traverse() if root is not None else []:
            if node.mem_id == root.mem_id:
                continue
            classes = " ".join(element_keys(node)).lower()
            blockquotes += node.tag == "blockquote"
            if node.tag == "blockquote" or "quote" in classes:
                counts.update(
                    key for key in element_keys(node) if "header" not in key and "footer" not in key
                )
    classed = any(key.startswith("blockquote.") and counts[key] == blockquotes for key in counts)
    if (
        blockquotes
        and not classed
        and not any("quote" in key.lower() and key[:10] != "blockquote" for key in counts)
    ):
        return "blockquote"  # some quotes have a class, some not (phpBB 3.0: cited and uncited)
    preferred = [key for key in counts if key.startswith("blockquote.") and "quote" in key.lower()]
    ranked = preferred or [key for key in counts if "quote" in key.lower() and "title" not in key.lower()]
    ranked = ranked or [key for key in counts if key.startswith("blockquote")]
    if ranked:
        return max(ranked, key=lambda key: counts[key])
    return labelled_quote(members, body)


def labelled_quote(members: list[Node], body: str) -> str | None:
    """A quote with no class of its own (vBulletin 3.8: a styled div): the block whose first child is
    a "Quote:" label, as `div:has(> div.smallfont)`; the label then goes with the quote."""
    for member in members:
        root = member.css_first(body)
        for node in root.traverse() if root is not None else []:
            parent = node.parent
            if (
                element_keys(node)
                and is_header(node, QUOTE_HEADER)
                and parent is not None
                and parent.tag == "div"
            ):
                return f"div:has(> {element_keys(node)[0]})"
    return None


def pick_signature(members: list[Node], keys: list[str]) -> str | None:
    signatures = [
        key
        for key in keys
        if any("sig" in names(node) for member in members[:30] if (node := member.css_first(key)) is not None)
    ]
    named = [key for key in signatures if "sig" in key.lower()]  # div.signature over div.ugc of the same div
    return min(named or signatures, key=len) if signatures else None


def pick_title(members: list[Node], keys: list[str]) -> str | None:
    """A heading every post repeats ("Re: the thread's title"): never part of the post's words."""
    for key in keys:
        nodes = [member.css_first(key) for member in members]
        if sum(node is not None and node.tag in {"h2", "h3", "h4", "h5"} for node in nodes) >= 0.2 * len(
            members
        ):
            return key
    return None


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
