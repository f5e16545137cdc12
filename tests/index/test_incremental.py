"""`forumtune index` after an incremental re-crawl: only what changed is cleaned and embedded, and the
index ends equal to one built from scratch over the same store (passages, BM25 and vector results)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
from rich.console import Console

from forumtune.config import ScrapeConfig, load_config
from forumtune.layout import RunLayout
from forumtune.pipeline import get_stage, run_stage
from forumtune.retrieval.retriever import Retriever
from forumtune.retrieval.search_index import SearchIndex
from forumtune.scrape.crawler import crawl
from tests.conftest import write_config
from tests.retrieval.reference import save_tiny_embedding_model
from tests.scrape.forums import phpbb
from tests.scrape.forums.content import CAFE, WAXING, Forum, Post, Thread, at, write_forum
from tests.scrape.forums.server import serve_forum

LATE_REPLY = Post(10, "ivan", at("2019-02-01"), "A late reply: hard wax on the last page that grows.")
NEXT_PAGE = Post(13, "lee", at("2019-02-02"), "And this one opens a new page about scraping wax.")
SUMMER = Post(11, "judy", at("2019-08-03"), "Yes, the café is open all summer for espresso.")
NEW_THREAD = Thread(
    104,
    "brand-new-thread",
    "A brand new thread about boots",
    [[Post(12, "kim", at("2020-01-01"), "Hello, all. Which boots for wide feet?")]],
)
QUESTIONS = ["wax for cold snow", "is the café open in summer", "boots for wide feet", "page thread loops"]


def forum_a_week_later() -> Forum:
    """New posts on the last page and on a new one, an edited post, a new thread."""
    waxing = replace(WAXING, pages=[WAXING.pages[0], [*WAXING.pages[1], LATE_REPLY], [NEXT_PAGE]])
    edited = replace(CAFE.pages[0][0], words="The café at the top now serves “real” espresso and cake.")
    cafe = replace(CAFE, pages=[[edited, *CAFE.pages[0][1:], SUMMER]])
    return Forum().with_thread(waxing).with_thread(cafe).with_thread(NEW_THREAD)


def index_contents(layout: RunLayout) -> dict:
    """Everything a search sees, keyed by what identifies a post across runs (ids differ)."""
    with SearchIndex(layout.search_index) as index:
        passages = [p for batch in index.iter_passages() for p in batch]
        hashes = index.source_hashes()
    key = {p.id: (p.thread_url, p.position) for p in passages}
    retriever = Retriever.open(layout.search_index, layout.vector_index)
    results = {
        (question, mode): [
            (key[hit.passage_id], round(hit.score, 6)) for hit in retriever.ranking(question, 5, mode)
        ]
        for question in QUESTIONS
        for mode in ("bm25", "dense", "hybrid")
    }
    retriever.close()
    rows = sorted(
        ((p.thread_url, p.position), p.title, p.author, p.posted_at, p.url, p.text) for p in passages
    )
    return {"passages": rows, "hashes": hashes, "results": results}


@pytest.fixture
def served_forum(tmp_path):
    folder = tmp_path / "forum"
    write_forum(phpbb, Forum(), folder)
    with serve_forum(folder) as (base_url, _):
        yield folder, base_url


def test_an_index_updated_after_a_recrawl_equals_one_built_from_scratch(tmp_path, served_forum):
    folder, base_url = served_forum
    model_dir = save_tiny_embedding_model(
        tmp_path / "tiny-bert",
        [post.words for thread in forum_a_week_later().threads for post in thread.posts] + QUESTIONS,
    )
    config = load_config(write_config(tmp_path / "updated", index={"embedding_model": str(model_dir)}))
    layout = RunLayout.of(config)
    scrape = ScrapeConfig(url="", site="phpbb", requests_per_second=0, concurrency=4)

    crawl(scrape, layout.forum_store, base_url + phpbb.list_path(1), show_progress=False)
    first = run_stage(get_stage("index"), config, Console(quiet=True))
    assert first["added"] == first["passages"] > 0 and first["vectors"]

    write_forum(phpbb, forum_a_week_later(), folder)
    crawl(scrape, layout.forum_store, base_url + phpbb.list_path(1), show_progress=False)
    update = run_stage(get_stage("index"), config, Console(quiet=True))
    # 4 new posts and 1 edited one are cleaned and embedded; the rest is left alone
    assert (update["added"], update["removed"], update["embedded"]) == (5, 1, 5)
    assert update["unchanged"] == first["passages"] + first["skipped"] - 1

    scratch = load_config(write_config(tmp_path / "scratch", index={"embedding_model": str(model_dir)}))
    scratch_layout = RunLayout.of(scratch)
    scratch_layout.root.mkdir(parents=True)
    shutil.copy(layout.forum_store, scratch_layout.forum_store)
    built = run_stage(get_stage("index"), scratch, Console(quiet=True))
    assert built["passages"] == update["passages"] and built["embedded"] == built["passages"]
    assert index_contents(layout) == index_contents(scratch_layout)


def test_a_vector_file_out_of_step_with_the_passages_is_rebuilt(tmp_path, served_forum):
    _, base_url = served_forum
    model_dir = save_tiny_embedding_model(tmp_path / "tiny-bert", QUESTIONS)
    config = load_config(write_config(tmp_path, index={"embedding_model": str(model_dir)}))
    layout = RunLayout.of(config)
    crawl(
        ScrapeConfig(url="", site="phpbb", requests_per_second=0),
        layout.forum_store,
        base_url + phpbb.list_path(1),
        show_progress=False,
    )
    first = run_stage(get_stage("index"), config, Console(quiet=True))
    layout.vector_index.unlink()  # as if a run was killed after the passages were written
    again = run_stage(get_stage("index"), config, Console(quiet=True))
    assert (again["added"], again["embedded"]) == (0, first["passages"])
    assert Retriever.open(layout.search_index, layout.vector_index).ranking("wax", 3, "dense")
