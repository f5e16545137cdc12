"""Which part of a post block is which, for `--suggest` (scrape/suggest.py): the body (the deepest
element holding most of the words), the author (a short text that changes between posts), the date, the
title, the signature, the quotes, and the quote and edit headers to drop from the body."""

from __future__ import annotations

import re
import statistics
from collections import Counter

from selectolax.lexbor import LexborNode as Node

from forumtune.scrape.sites.html import element_date
from forumtune.scrape.suggest_blocks import contains, depth, element_keys, first_texts, names, text_length

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


def pick_title(members: list[Node], keys: list[str]) -> str | None:
    """A heading every post repeats ("Re: the thread's title"): never part of the post's words."""
    for key in keys:
        nodes = [member.css_first(key) for member in members]
        if sum(node is not None and node.tag in {"h2", "h3", "h4", "h5"} for node in nodes) >= 0.2 * len(
            members
        ):
            return key
    return None


def pick_signature(members: list[Node], keys: list[str]) -> str | None:
    signatures = [
        key
        for key in keys
        if any("sig" in names(node) for member in members[:30] if (node := member.css_first(key)) is not None)
    ]
    named = [key for key in signatures if "sig" in key.lower()]  # div.signature over div.ugc of the same div
    return min(named or signatures, key=len) if signatures else None


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
