"""The content every fixture forum shows, whatever its engine's markup, and the writer of its pages.

Thread "Waxing skis at home" spans two pages and has a signature, an edit notice, a quote, a quote
inside a quote, a deleted post, a link, likes and an accepted answer; "Café trip report" is served in windows-1252; "Looping
pages" has a second page whose next-page link leads back to the first, and malformed HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class Quote:
    author: str
    words: str
    inner: Quote | None = None


@dataclass(frozen=True)
class Post:
    id: int
    author: str
    at: datetime
    words: str
    quote: Quote | None = None
    signature: str | None = None
    edited: bool = False
    deleted: bool = False
    link: tuple[str, str] | None = None  # (url, text) written after the words
    likes: int = 0  # likes / reactions / thanks, shown where the engine shows them
    accepted: bool = False  # marked as the solution, where the engine has such a mark


@dataclass(frozen=True)
class Thread:
    id: int
    slug: str
    title: str
    pages: list[list[Post]]
    encoding: str = "utf-8"
    malformed: bool = False
    loops_back: bool = False  # the last page's "next" link points at the first page

    @property
    def posts(self) -> list[Post]:
        return [post for page in self.pages for post in page]

    @property
    def last_post_at(self) -> datetime:
        return max(post.at for post in self.posts)


@dataclass(frozen=True)
class Row:
    url: str
    title: str
    starter: str
    last_post_at: datetime
    replies: int


def at(day: str, time: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}:00").replace(tzinfo=UTC)


ASK = "What wax do you all use for cold snow?"
ANSWER = "A hard green wax works below minus ten."
WAXING = Thread(
    101,
    "waxing-skis-at-home",
    "Waxing skis at home",
    [
        [
            Post(
                1,
                "alice",
                at("2019-01-07", "19:50"),
                f"Finally bought an iron. {ASK}",
                signature="-- alice, Tahoe local",
            ),
            Post(
                2,
                "bob",
                at("2019-01-08", "08:15"),
                ANSWER,
                quote=Quote("alice", ASK),
                edited=True,
                likes=5,
                accepted=True,
            ),
            Post(
                3,
                "carol",
                at("2019-01-08", "12:00"),
                "Agreed, and scrape it thin.",
                likes=1,
                quote=Quote("bob", ANSWER, inner=Quote("alice", ASK)),
            ),
        ],
        [
            Post(4, "dave", at("2019-01-08", "13:00"), "Buy my wax kit!", deleted=True),
            Post(
                5,
                "alice",
                at("2019-01-09", "09:30"),
                "Thanks! I found a guide on",
                link=("https://example.org/wax-guide", "this page"),
                signature="-- alice, Tahoe local",
            ),
        ],
    ],
)
CAFE = Thread(
    102,
    "cafe-trip-report",
    "Café trip report",
    [
        [
            Post(6, "erin", at("2019-08-01"), "The café at the top serves “real” espresso."),
            Post(7, "frank", at("2019-08-02", "11:00"), "Naïve question: is it open in summer?"),
        ]
    ],
    encoding="cp1252",
)
LOOPING = Thread(
    103,
    "looping-pages",
    "Looping pages",
    [
        [Post(8, "gina", at("2018-03-01"), "Page one of a thread whose pagination loops.")],
        [Post(9, "hank", at("2018-03-02"), "Page two links back to page one.")],
    ],
    malformed=True,
    loops_back=True,
)
OFF_HOST_ROW = Row(
    "http://elsewhere.invalid/threads/999/", "A thread on another site", "spammer", at("2019-05-01"), 1
)


@dataclass
class Forum:
    """The threads of the forum, newest first; the first two on list page 1, the rest on page 2."""

    threads: list[Thread] = field(default_factory=lambda: [CAFE, WAXING, LOOPING])
    extra_rows: list[Row] = field(default_factory=lambda: [OFF_HOST_ROW])

    def with_thread(self, thread: Thread) -> Forum:
        """The forum once `thread` was posted (a new one goes first; a known one is replaced)."""
        others = [known for known in self.threads if known.id != thread.id]
        return replace(self, threads=sorted([thread, *others], key=lambda t: t.last_post_at, reverse=True))


def write_forum(engine: ModuleType, forum: Forum, folder: Path) -> None:
    """Write every page of `forum` in `engine`'s markup, named as the test server finds them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "robots.txt").write_text("User-agent: *\nDisallow: /members/\nDisallow: /memberlist.php\n")
    threads = forum.threads
    rows = [
        Row(engine.thread_path(t, 1), t.title, t.posts[0].author, t.last_post_at, len(t.posts) - 1)
        for t in threads
    ]
    pages = [rows[:2], rows[2:] + forum.extra_rows]
    for number, page_rows in enumerate(pages, start=1):
        next_path = engine.list_path(number + 1) if number < len(pages) else None
        write_page(
            folder, engine.list_path(number), engine.render_list(page_rows, next_path, number), "utf-8"
        )
    for thread in threads:
        for number, posts in enumerate(thread.pages, start=1):
            last = number == len(thread.pages)
            next_path = engine.thread_path(thread, number + 1) if not last else None
            if last and thread.loops_back:
                next_path = engine.thread_path(thread, 1)
            page = engine.render_thread(thread, number, posts, next_path)
            page = malformed(page) if thread.malformed and not page.startswith("{") else page  # HTML only
            write_page(folder, engine.thread_path(thread, number), page, thread.encoding)
            if last and thread.loops_back:  # like ?page=99 on many forums: past the end, the last page again
                write_page(folder, engine.thread_path(thread, number + 1), page, thread.encoding)


def malformed(html: str) -> str:
    """Broken the way real pages are: unclosed tags, a stray end tag, the document cut before it ends."""
    cut = html.rfind("</body>")
    return html[:cut].replace("</span>", "", 1) + "<div><b>unclosed <i>tags</span>"


def file_for(folder: Path, path: str) -> Path:
    """/viewtopic.php?t=1&start=10 → viewtopic.php@t=1&start=10; /threads/x/ → threads/x/index.html."""
    path, _, query = path.partition("?")
    name = path.lstrip("/") + ("index.html" if path.endswith("/") else "")
    return folder / (f"{name}@{query}" if query else name)


def write_page(folder: Path, path: str, text: str, encoding: str) -> None:
    target = file_for(folder, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text.encode(encoding))
