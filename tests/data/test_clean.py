from collections import Counter

from forumtune.data.clean import clean_post

POST = """[b]Rossignol Soul 7[/b] is great in pow :D check https://www.example-skishop.com/soul7?ref=1
also [url=https://example.com/review]this review[/url] and [img]https://example.com/x.jpg[/img]
<i>ride it shorter</i> &amp; tune it :cool:

**This post was edited on Jan 13th 2022 at 9:58:47pm
send it, bro"""


def test_every_artifact_is_removed_and_counted():
    stats: Counter[str] = Counter()
    text = clean_post(POST, signature="send it, bro", stats=stats)
    assert text == "Rossignol Soul 7 is great in pow check\nalso this review and\nride it shorter & tune it"
    for leftover in ("[", "]", "<i>", "http", "edited on", ":D", ":cool:", "send it, bro"):
        assert leftover not in text
    assert stats == Counter({"bbcode_tags": 3, "bbcode_images": 1, "html_tags": 2, "urls": 1,
                             "emoji_shortcodes": 2, "edit_notices": 1, "signatures": 1})


def test_urls_kept_when_asked():
    text = clean_post("see www.example.com/tips for more", keep_urls=True)
    assert text == "see www.example.com/tips for more"


def test_times_and_ratios_are_not_emoji():
    assert clean_post("meet at 9:30, ratio 3:1") == "meet at 9:30, ratio 3:1"


def test_whitespace_is_collapsed():
    assert clean_post("  a \t b\n\n\n\nc  ") == "a b\n\nc"
