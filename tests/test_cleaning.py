from collections import Counter

import pytest

from forumtune.cleaning import clean_post
from forumtune.data.posts import is_low_content

POST = """[b]Rossignol Soul 7[/b] is great in pow :D check https://www.example-skishop.com/soul7?ref=1
also [url=https://example.com/review]this review[/url] and [img]https://example.com/x.jpg[/img]
<i>ride it shorter</i> &amp; tune it :cool:

**This post was edited on Jan 13th 2022 at 9:58:47pm
send it, bro"""


def test_every_artifact_is_removed_and_counted():
    stats: Counter[str] = Counter()
    text = clean_post(POST, signature="send it, bro", stats=stats)
    assert text == "Rossignol Soul 7 is great in pow check\nalso this review and\nride it shorter & tune it"
    assert stats == Counter(
        {
            "bbcode_tags": 4,
            "html_tags": 2,
            "urls": 1,
            "emoji_shortcodes": 2,
            "edit_notices": 1,
            "signatures": 1,
        }
    )


@pytest.mark.parametrize(
    ("raw", "kind", "gone"),
    [
        ("[quote=ann][quote=bob]inner[/quote] outer[/quote]Mine.", "quotes", "outer"),
        ("<blockquote>theirs</blockquote>Mine.", "quotes", "theirs"),
        ("> theirs\nMine.", "quotes", "theirs"),
        ("Mine.\nLast edited by gary; 01-13-2022 at 09:58 PM.", "edit_notices", "edited"),
        ("Mine.\n[mod]Moved to gear.[/mod]", "mod_notes", "Moved"),
        ("Mine.\nModerator note: read the rules.", "mod_notes", "rules"),
        ("Mine.\n--\nGary | Whistler local", "signatures", "Whistler"),
        ("Mine.\nSent from my iPhone using Tapatalk", "signatures", "iPhone"),
        ("User 2: Mine.", "speaker_tags", "User"),
        ("Assistant: Mine.", "speaker_tags", "Assistant"),
        ("[INST] Mine. [/INST] </s>", "template_tokens", "INST"),
        ("<|im_start|>Mine.<|eot_id|>", "template_tokens", "|"),
        ("Mine. [emoji106] ;)", "emoji_shortcodes", "emoji"),
        ("Mine. mail gary.g@example.com", "emails", "@"),
        ("Mine. call +44 20 7946 0958", "phones", "7946"),
    ],
)
def test_each_artifact_kind(raw, kind, gone):
    stats: Counter[str] = Counter()
    cleaned = clean_post(raw, stats=stats)
    assert "Mine." in cleaned and gone not in cleaned
    assert stats[kind] >= 1


def test_urls_dropped_made_readable_or_kept():
    post = "see https://www.example.com/tips?ref=3#top for more"
    assert clean_post(post) == "see for more"
    assert clean_post(post, urls="readable") == "see example.com/tips for more"
    assert clean_post(post, urls="keep") == post


def test_contacts_kept_when_not_scrubbing():
    assert clean_post("call 555-123-4567", scrub_contacts=False) == "call 555-123-4567"


def test_times_dates_and_ratios_are_kept():
    text = "meet at 9:30 on 2022-01-13, ratio 3:1, 180 cm"
    assert clean_post(text) == text


def test_whitespace_is_collapsed():
    assert clean_post("  a \t b\n\n\n\nc  ") == "a b\n\nc"


@pytest.mark.parametrize(
    ("raw", "low"),
    [
        ("+1", True),
        ("This!", True),
        ("bump", True),
        ("https://example.com/deal", True),
        ("Great tips, I wax every week in spring.", False),
        ("See https://example.com for the full wax guide here", False),
    ],
)
def test_low_content_replies(raw, low):
    assert is_low_content(raw, clean_post(raw)) is low
