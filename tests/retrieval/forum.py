"""A small ski forum written straight into a real forum store: near-duplicate questions across threads,
words shared by many posts and words only one post has, so BM25's idf and length terms all matter."""

from __future__ import annotations

from pathlib import Path

from forumtune.forum_store import ForumStore, ScrapedPost, ThreadRef

THREADS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Waxing skis at home",
        [
            ("alice", "What wax do you use for cold snow? I just bought an iron."),
            ("bob", "A hard green wax works below minus ten. Scrape it thin and brush."),
            ("carol", "Agreed, scrape thin. Cold snow wants hard wax, warm snow wants soft wax."),
            ("dave", "Do not overheat the base with the iron, keep it moving."),
        ],
    ),
    (
        "Which wax for very cold days?",
        [
            ("erin", "Heading to Montana in January. Which wax for minus twenty snow?"),
            ("frank", "Green or blue hard wax. Cold wax is harder to iron so go slow."),
            ("gina", "I use a universal wax and never noticed a difference honestly."),
        ],
    ),
    (
        "Boots killing my shins",
        [
            ("hank", "My new boots hurt my shins after one run. Is it the boot or me?"),
            (
                "ivan",
                "Shin bang usually means the boot is too big or you lean back. Get a fitter to check the shell.",
            ),
            ("judy", "Buckle the top buckle tighter and lean forward, the pain went away for me."),
            ("kim", "Heat mold the liners. A boot fitter fixed my shins in twenty minutes."),
        ],
    ),
    (
        "Setting DIN on my own",
        [
            ("lee", "First time setting DIN myself. What number for my weight and boot sole length?"),
            ("mia", "Use the chart for weight, height, age and skier type, then the boot sole length row."),
            ("ned", "Please let a shop set your DIN, a wrong number can break a knee."),
        ],
    ),
    (
        "Best all-mountain ski for the east coast",
        [
            ("olga", "Looking for an all-mountain ski for ice and hardpack on the east coast."),
            ("pete", "Something narrow with metal, under 90 underfoot, holds an edge on ice."),
            ("quin", "Sharp edges matter more than the ski on east coast ice. Tune your edges."),
            ("rita", "ok"),
        ],
    ),
]


def write_ski_forum(path: Path) -> Path:
    """The threads above in a forum store at `path` (as a finished crawl would leave them)."""
    with ForumStore(path) as store:
        refs = [ThreadRef(f"http://forum.test/t/{n}", title) for n, (title, _) in enumerate(THREADS, start=1)]
        store.add_list_page("http://forum.test/", refs, None)
        for thread, (title, posts) in zip(store.threads(), THREADS):
            scraped = [
                ScrapedPost(f"p{thread.id}{i}", author, f"2024-01-{i + 1:02d}", text)
                for i, (author, text) in enumerate(posts)
            ]
            store.add_thread_page(thread.id, title, scraped, None, True, page_url=thread.url)
    return path


def every_text() -> list[str]:
    return [title for title, _ in THREADS] + [text for _, posts in THREADS for _, text in posts]
