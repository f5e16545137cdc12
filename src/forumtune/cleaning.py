"""Cleaning one post's text: forum artifacts out, the author's own words in.

Every step is one row of CLEANING_STEPS: what it removes, the pattern, and a cheap test that skips
the regex for posts that cannot contain it (most posts hold no BBCode, no URL, no e-mail). The
stats Counter counts removals under each step's name, so the build can say what it took out.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

UrlPolicy = Literal["drop", "readable", "keep"]
Replacement = str | Callable[[re.Match[str]], str]

BBCODE_NAMES = (
    r"b|i|u|s|url|img|quote|color|colour|size|font|center|left|right|code|list|\*|spoiler|"
    r"sup|sub|strike|indent|hr|media|youtube|video|attach|email|highlight|table|tr|td|h\d|"
    r"mod|modnote|user|member|emoji"
)
# Markup of chat templates: leaked into a post it would teach the model to emit or obey it.
TEMPLATE_TOKENS = re.compile(
    r"\[/?INST\]|<</?SYS>>|</?s>|<\|[a-z_]+(?:\|[a-z_]+)*\|>|<(?:start|end)_of_turn>|<(?:bos|eos|pad)>",
    re.IGNORECASE,
)
QUOTE_BLOCKS = re.compile(
    r"\[quote(?:[= ][^\]]*)?\](?:(?!\[quote).)*?\[/quote\]|<blockquote\b[^>]*>(?:(?!<blockquote).)*?</blockquote>",
    re.IGNORECASE | re.DOTALL,
)
QUOTE_LINES = re.compile(
    r"^[ \t]*(?:>.*|\S+ (?:wrote|said|writes|says):\s*$|quote:?\s*$|originally posted by\b.*|"
    r"quote from:.*|in reply to\b.*:\s*$)$\n?",
    re.IGNORECASE | re.MULTILINE,
)
EDIT_NOTICES = re.compile(
    r"^[ \t]*[*_\[(]*\s*(?:this (?:post|message|reply) (?:was|has been) (?:last )?edited\b|last edited\b|"
    r"edited (?:by|on|at)\b|edited \d+ times?\b|message edited by\b).*$\n?",
    re.IGNORECASE | re.MULTILINE,
)
MOD_NOTES = re.compile(
    r"\[(mod|modnote|moderator)(?:=[^\]]*)?\](?s:.*?)\[/\1\]|"
    r"^[ \t]*[*_\[(]*\s*(?:mod(?:erator)?(?:'s)? (?:note|edit|warning)|admin note|note from (?:the )?mod\w*)"
    r"\b.*$\n?",
    re.IGNORECASE | re.MULTILINE,
)
SIGNATURE_LINES = re.compile(
    r"(?:^-- ?\n(?:.*\n?){1,6}\Z)|^[ \t]*sent from my [^\n]*$\n?", re.IGNORECASE | re.MULTILINE
)
SPEAKER_TAGS = re.compile(
    r"^[ \t]*\**(?:user|human|assistant|system|bot|ai|speaker|person|poster|guest|member|op)[ \t]*\d*\**"
    r"[ \t]*:[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
BBCODE_IMAGES = re.compile(
    r"\[(img|attach|media|youtube|video)(?:=[^\]]*)?\].*?\[/\1\]", re.IGNORECASE | re.DOTALL
)
BBCODE_LINKS = re.compile(r"\[url=[^\]]*\](.*?)\[/url\]", re.IGNORECASE | re.DOTALL)
BBCODE_TAGS = re.compile(rf"\[/?(?:{BBCODE_NAMES})(?:=[^\]]*)?\]", re.IGNORECASE)
HTML_TAGS = re.compile(r"<!--.*?-->|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>", re.DOTALL)
MARKDOWN_LINKS = re.compile(r"!?\[([^\]\n]*)\]\((?:https?://|www\.)[^)\s]+\)")
URLS = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'\]\[]+[^\s<>\"'\]\[.,;:!?)]", re.IGNORECASE)
EMAILS = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
PHONES = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,5}(?![\w-])")
EMOJI = re.compile(
    r"(?<![\w:]):[a-z][a-z0-9_+-]*:(?![\w:])|(?<!\S)[:;=]-?[DPpOo3)(/\\|\]\[]+(?!\S)|"
    r"\[emoji\d+\]|(?<!\S)<3(?!\S)",
    re.IGNORECASE,
)
EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([.,;:!?])")
SPACES = re.compile(r"[ \t\u00a0\u200b]+")
BLANK_LINES = re.compile(r"\n\s*\n+")
INLINE_QUOTE = re.compile(
    r"\[quote(?:=\"?([^\]\";]*)[^\]]*)?\](.*?)\[/quote\]|<blockquote\b[^>]*>(.*?)</blockquote>",
    re.IGNORECASE | re.DOTALL,
)


def readable_url(match: re.Match[str]) -> str:
    """`https://www.example.com/review?id=3#top` → `example.com/review`: what a reader would say."""
    url = re.sub(r"^(?:https?://)?(?:www\.)?", "", match.group(0), flags=re.IGNORECASE)
    return re.split(r"[?#]", url, maxsplit=1)[0].rstrip("/")


@dataclass(frozen=True)
class CleaningStep:
    name: str
    pattern: re.Pattern[str]
    replacement: Replacement
    needs: tuple[str, ...]  # the step runs only when the text contains one of these (lower-cased)


def cleaning_steps(urls: UrlPolicy, scrub_contacts: bool) -> list[CleaningStep]:
    """The steps in the order they must run: whole blocks (quotes, notices) before the markup inside them."""
    steps = [
        CleaningStep("quotes", QUOTE_BLOCKS, "\n", ("[quote", "<blockquote")),
        CleaningStep("quotes", QUOTE_LINES, "", (">", "wrote", "said", "quote", "posted", "reply")),
        CleaningStep("edit_notices", EDIT_NOTICES, "", ("edited",)),
        CleaningStep("mod_notes", MOD_NOTES, "", ("mod", "admin")),
        CleaningStep("signatures", SIGNATURE_LINES, "", ("--", "sent from")),
        CleaningStep(
            "template_tokens",
            TEMPLATE_TOKENS,
            " ",
            ("inst]", "sys>>", "<s>", "</s>", "<|", "_of_turn>", "<bos>", "<eos>", "<pad>"),
        ),
        CleaningStep("bbcode_tags", BBCODE_IMAGES, "", ("[img", "[attach", "[media", "[youtube", "[video")),
        CleaningStep("bbcode_tags", BBCODE_LINKS, r"\1", ("[url=",)),
        CleaningStep("bbcode_tags", BBCODE_TAGS, "", ("[",)),
        CleaningStep("html_tags", HTML_TAGS, "", ("<",)),
        CleaningStep("urls", MARKDOWN_LINKS, r"\1", ("](",)),
    ]
    if urls != "keep":
        steps.append(CleaningStep("urls", URLS, readable_url if urls == "readable" else "", ("http", "www.")))
    if scrub_contacts:
        steps += [
            CleaningStep("emails", EMAILS, "", ("@",)),
            CleaningStep("phones", PHONES, "", tuple("0123456789")),
        ]
    steps += [
        CleaningStep("emoji_shortcodes", EMOJI, "", (":", ";", "=", "[emoji", "<3")),
        CleaningStep("speaker_tags", SPEAKER_TAGS, "", (":",)),
    ]
    return steps


def strip_signature(text: str, signature: str | None, stats: Counter[str]) -> str:
    """The scraper keeps a post's signature apart; when it is also in the text, it comes off the end."""
    signature = (signature or "").strip()
    stripped = text.rstrip()
    if signature and stripped.endswith(signature):
        stats["signatures"] += 1
        return stripped[: -len(signature)]
    return text


def tidy_whitespace(text: str) -> str:
    text = EMPTY_BRACKETS.sub("", text)
    lines = [SPACE_BEFORE_PUNCTUATION.sub(r"\1", SPACES.sub(" ", line)).strip() for line in text.splitlines()]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_post(
    text: str,
    *,
    signature: str | None = None,
    urls: UrlPolicy = "drop",
    scrub_contacts: bool = True,
    stats: Counter[str] | None = None,
    steps: list[CleaningStep] | None = None,
) -> str:
    """The post's own words as plain text; `stats` counts every artifact removed, by kind."""
    stats = stats if stats is not None else Counter()
    text = html.unescape(text) if "&" in text else text
    text = strip_signature(text, signature, stats)
    for step in steps if steps is not None else cleaning_steps(urls, scrub_contacts):
        lowered = text.lower()
        if not any(marker in lowered for marker in step.needs):
            continue
        count = 1
        while count:  # again, for blocks nested in blocks (a quote inside a quote)
            text, count = step.pattern.subn(step.replacement, text)
            if count:
                stats[step.name] += count
    return tidy_whitespace(text)


def inline_quotes(text: str) -> list[tuple[str | None, str]]:
    """(quoted author or None, quoted text) of each quote block still inside a post's raw text."""
    quotes = []
    for match in INLINE_QUOTE.finditer(text):
        body = match.group(2) if match.group(2) is not None else match.group(3)
        quotes.append((match.group(1) or None, body))
    return quotes
