"""Community signals a page shows about a post: likes / reactions / thanks, net votes, an accepted mark.

Forums write these in many ways: a bare count ("12", "1.2K"), a sentence ("The Following 3 Users Say
Thank You"), or the names of who liked the post with a remainder (XenForo: "alice, bob and 3 others").
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborNode as Node

COUNT = re.compile(r"(\d[\d,.]*)\s*([kKmM])?\b")
SIGNED = re.compile(r"([+\-\u2212]?)\s*(\d[\d,]*)")
OTHERS = re.compile(r"(\d[\d,]*)\s+others?\b", re.IGNORECASE)
NAMES = "bdi, a[href*=member], a[href*=user], a.username"
SUFFIX = {"k": 1_000, "m": 1_000_000}


def parse_count(text: str) -> int | None:
    """12 → 12, "1,234 likes" → 1234, "1.2K" → 1200; None when the text holds no number."""
    match = COUNT.search(text)
    if match is None:
        return None
    digits, suffix = match.groups()
    if suffix:
        return round(float(digits.replace(",", "")) * SUFFIX[suffix.lower()])
    return int(digits.replace(",", "").replace(".", ""))


def signal_elements(post: Node, selector: str | None) -> list[Node]:
    """The elements a signal selector finds inside the post; a selector that starts with "+" is matched
    on the element right after the post instead (vBulletin's thanks box follows its post)."""
    if not selector:
        return []
    if not selector.startswith("+"):
        return post.css(selector)
    sibling = post.next
    while sibling is not None and not sibling.tag.isalnum():  # text and comments between the two
        sibling = sibling.next
    return sibling.css(selector[1:].strip()) if sibling is not None else []


def total_likes(elements: list[Node]) -> int | None:
    """Likes shown by the elements: one count, or one per kind of reaction (IPS), added up."""
    counts = [count for element in elements if (count := likes_of(element)) is not None]
    return sum(counts) if counts else None


def likes_of(node: Node | None) -> int | None:
    """How many liked the post, from the element that shows it; None without one."""
    if node is None:
        return None
    for attribute in ("data-count", "data-likes"):
        if (value := node.attributes.get(attribute)) and value.strip().isdigit():
            return int(value)
    text = " ".join(node.text(separator=" ").split())
    names = len(node.css(NAMES))
    if (others := OTHERS.search(text)) is not None:  # "alice, bob and 3 others"
        return names + int(others.group(1).replace(",", ""))
    count = parse_count(text)
    if count is not None:
        return count
    return names or (1 if text else 0)  # "alice likes this"


def score_of(node: Node | None) -> int | None:
    """Net votes: "+5", "-3" (or "−3"), "12 points"; None without an element or a number."""
    if node is None:
        return None
    value = node.attributes.get("data-score") or node.text(separator=" ")
    match = SIGNED.search(value or "")
    if match is None:
        return None
    sign, digits = match.groups()
    number = int(digits.replace(",", ""))
    return -number if sign in ("-", "\u2212") else number
