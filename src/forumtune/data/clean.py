"""Cleaning one post's text: forum artifacts out, the author's own words in."""

from __future__ import annotations

import html
import re
from collections import Counter

EDIT_NOTICE = re.compile(r"^\s*\**\s*this post was edited on\b.*$", re.IGNORECASE | re.MULTILINE)
BBCODE_URL = re.compile(r"\[url=[^\]]*\](.*?)\[/url\]", re.IGNORECASE | re.DOTALL)
BBCODE_IMG = re.compile(r"\[img\].*?\[/img\]", re.IGNORECASE | re.DOTALL)
BBCODE_QUOTE = re.compile(r"\[quote(?:=[^\]]*)?\].*?\[/quote\]", re.IGNORECASE | re.DOTALL)
BBCODE_TAG = re.compile(r"\[/?(?:b|i|u|s|url|img|quote|color|size|font|center|code|list|\*)(?:=[^\]]*)?\]",
                        re.IGNORECASE)
HTML_TAG = re.compile(r"</?[a-zA-Z][^>\n]*>")
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
EMOJI_SHORTCODE = re.compile(r"(?<![\w:]):[a-z][a-z0-9_+-]*:(?![\w:])|(?<!\S)[:;]-?[DPpO)(/](?!\S)")
EMPTY_PARENS = re.compile(r"\(\s*\)")
SPACES = re.compile(r"[ \t\u00a0]+")
BLANK_LINES = re.compile(r"\n\s*\n+")


def _remove(pattern: re.Pattern[str], text: str, stats: Counter[str], key: str, repl: str = "") -> str:
    text, count = pattern.subn(repl, text)
    if count:
        stats[key] += count
    return text


def clean_post(text: str, *, signature: str | None = None, keep_urls: bool = False,
               stats: Counter[str] | None = None) -> str:
    """The post's own words as plain text; `stats` counts every artifact removed, by kind."""
    stats = stats if stats is not None else Counter()
    text = html.unescape(text)
    if signature and signature.strip() and text.rstrip().endswith(signature.strip()):
        text = text.rstrip()[: -len(signature.strip())]
        stats["signatures"] += 1
    text = _remove(EDIT_NOTICE, text, stats, "edit_notices")
    text = _remove(BBCODE_QUOTE, text, stats, "bbcode_quotes")
    text = _remove(BBCODE_IMG, text, stats, "bbcode_images")
    text = _remove(BBCODE_URL, text, stats, "bbcode_tags", r"\1")
    text = _remove(BBCODE_TAG, text, stats, "bbcode_tags")
    text = _remove(HTML_TAG, text, stats, "html_tags")
    if not keep_urls:
        text = _remove(URL, text, stats, "urls")
    text = _remove(EMOJI_SHORTCODE, text, stats, "emoji_shortcodes")
    text = EMPTY_PARENS.sub("", text)
    lines = [SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
