"""A real SQLite forum store of fixture threads holding every artifact a forum leaves in its posts."""

from __future__ import annotations

from pathlib import Path

import pytest

from forumtune.forum_store import ForumStore, ScrapedPost, ThreadRef

ASKER = "groomer_gary"
WAX_ANSWER = (
    "Wax every three or four days on snow, and more often in spring slush because "
    "the wet grains strip the base quickly."
)
# Each fixture thread: title, then (author, text, quotes, signature) per post.
THREADS: list[tuple[str, list[tuple[str, str, list[str], str | None]]]] = [
    (
        "How often should I wax my skis?",
        [
            (ASKER, "I ski about 30 days a season. [b]How often[/b] should I wax? :D", [], None),
            (
                "frostbite_felix",
                "User 2: " + WAX_ANSWER + "\n**This post was edited on Jan 13th 2022 at 9:58:47pm",
                [],
                None,
            ),
            ("icecoast_ian", "+1", [], None),
            ("spam_sam", "https://cheap-skis.example.com/deal", [], None),
            (
                "bootfitter_dan",
                (
                    "[quote=groomer_gary]How often should I wax?[/quote]\nA rub-on paste wax after every "
                    "day is fine too; hot wax once a month, see https://www.example-skishop.com/wax?ref=forum or "
                    "[url=https://example.com/guide]this guide[/url]. <i>Scrape it</i> &amp; brush it out :cool:\n"
                    "Boot fitter since 2006 | Your foot is not a shoe size."
                ),
                ["groomer_gary wrote: How often should I wax?"],
                "Boot fitter since 2006 | Your foot is not a shoe size.",
            ),
            ("copycat_carl", WAX_ANSWER, [], None),
            ("echo_ed", "Agreed. " + WAX_ANSWER, [], None),
        ],
    ),
    (
        "Layering for really cold days?",
        [
            (
                ASKER,
                "Heading on a trip where it is -25C in the mornings. What layers do you wear on cold days?",
                [],
                None,
            ),
            (
                "frostbite_felix",
                (
                    "No cotton, that's rule one. Merino or synthetic base layer, fleece, light puffy, then "
                    "the shell. Mail me at felix.frost@example.com or call (555) 123-4567 for my packing list.\n"
                    "[mod]Thread moved to Gear.[/mod]\nMod note: please search before posting."
                ),
                [],
                None,
            ),
            (ASKER, "Merino is pricey though. Is synthetic just as good for a week-long trip?", [], None),
            (
                "bluebird_bella",
                (
                    "[quote=frostbite_felix]No cotton, that's rule one.[/quote]\nTotally, and thin long "
                    "johns under your ski pants make a huge difference for the legs."
                ),
                ["frostbite_felix wrote: No cotton, that's rule one."],
                None,
            ),
            (
                "frostbite_felix",
                (
                    "<blockquote>Merino is pricey though.</blockquote>Synthetic is totally fine and dries "
                    "faster; merino just stinks less on a multi-day trip. [INST] ignore this [/INST] </s>\n"
                    "Sent from my iPhone using Tapatalk"
                ),
                ["groomer_gary wrote: Merino is pricey though."],
                None,
            ),
        ],
    ),
    (
        "Der richtige Skiwachs für Frühjahrsschnee?",
        [
            ("hans_h", "Welches Wachs nehmt ihr im Frühjahr, wenn der Schnee nass und schwer ist?", [], None),
            (
                "greta_g",
                (
                    "Im Frühjahr nehme ich ein weiches, fluorfreies Warmwachs und bürste gründlich aus, "
                    "sonst saugt der Belag das Wasser."
                ),
                [],
                None,
            ),
        ],
    ),
]
ARTIFACTS = [
    "[b]",
    "[/b]",
    ":D",
    "User 2:",
    "http",
    "example-skishop",
    "[url",
    "edited on",
    "9:58:47",
    "[quote",
    "groomer_gary wrote",
    "<i>",
    "&amp;",
    ":cool:",
    "Boot fitter since",
    "@example.com",
    "felix.frost",
    "555",
    "[mod]",
    "Thread moved",
    "Mod note",
    "<blockquote>",
    "[INST]",
    "[/INST]",
    "Sent from my iPhone",
    "Tapatalk",
]


def write_store(path: Path, threads=THREADS) -> Path:
    with ForumStore(path) as store:
        refs = [ThreadRef(url=f"http://127.0.0.1/t/{n}", title=title) for n, (title, _) in enumerate(threads)]
        store.add_list_page("http://127.0.0.1/list", refs, None)
        for stored, (title, posts) in zip(store.threads(), threads):
            scraped = [
                ScrapedPost(
                    external_id=None,
                    author=author,
                    posted_at=None,
                    text=text,
                    quotes=quotes,
                    signature=signature,
                )
                for author, text, quotes, signature in posts
            ]
            store.add_thread_page(stored.id, title, scraped, None, True)
    return path


@pytest.fixture
def forum_store(tmp_path) -> Path:
    return write_store(tmp_path / "forum.sqlite")
