"""Chat grounded in the forum (chat.retrieval): the passages go into the prompt within the token budget,
the server returns them as `sources` to the official openai client (and as markdown links when asked),
the REPL lists them with /sources, and the web page shows them as links under the answer (Chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from rich.console import Console
from tests.chat.browser import chromium_page, save_screenshot
from tests.chat.conftest import MODEL_NAME, live_server
from tests.chat.test_repl import memory_console, output_of, scripted
from tests.conftest import write_config
from tests.retrieval.forum import write_ski_forum

from forumtune.chat.engine import SamplingSettings
from forumtune.chat.grounding import Grounding
from forumtune.chat.repl import run_repl
from forumtune.chat.server import create_app
from forumtune.config import load_config
from forumtune.layout import RunLayout
from forumtune.pipeline import get_stage, run_stage
from forumtune.retrieval.context import CONTEXT_INTRO, fit_to_budget, question_with_context, source_block
from forumtune.retrieval.retriever import Retriever

QUESTION = "Which wax for cold snow?"
TOP_K = 3
BUDGET = 160
REPLY_TOKENS = 8


@pytest.fixture(scope="module")
def forum_index(tmp_path_factory) -> RunLayout:
    """The ski forum's store and its BM25 index, as `forumtune index` writes them."""
    root = tmp_path_factory.mktemp("grounded")
    config = load_config(write_config(root, index={"embedding_model": None}))
    layout = RunLayout.of(config)
    write_ski_forum(layout.forum_store)
    run_stage(get_stage("index"), config, Console(quiet=True))
    return layout


@pytest.fixture(scope="module")
def grounding(forum_index) -> Iterator[Grounding]:
    retriever = Retriever.open(forum_index.search_index, forum_index.vector_index)
    yield Grounding(retriever, TOP_K, BUDGET)
    retriever.close()


@pytest.fixture(scope="module")
def grounded_url(engine, grounding) -> Iterator[str]:
    app = create_app(
        {MODEL_NAME: engine},
        grounding=grounding,
        sampling=SamplingSettings(max_new_tokens=REPLY_TOKENS, temperature=0),
    )
    with live_server(app) as url:
        yield url


def test_passages_fill_the_token_budget_in_rank_order(engine, grounding):
    count = lambda text: len(engine.text_ids(text))
    found = grounding.retriever.search(QUESTION, TOP_K)
    sources = fit_to_budget(found, BUDGET, count)
    assert 1 <= len(sources) <= TOP_K
    assert [s.url for s in sources] == [r.passage.url for r in found][: len(sources)]
    assert sum(count(source_block(s)) for s in sources) <= BUDGET
    first = count(source_block(sources[0]))
    cut = fit_to_budget(found, first - 5, count)
    assert len(cut) == 1 and cut[0].text.endswith(" ...") and count(source_block(cut[0])) <= first - 5
    message = question_with_context(QUESTION, sources)
    assert message.startswith(CONTEXT_INTRO) and message.endswith(f"Question: {QUESTION}")
    assert "[1] " + sources[0].title in message


def test_the_server_returns_sources_to_the_openai_client(grounded_url, engine, grounding):
    client = OpenAI(base_url=f"{grounded_url}/v1", api_key="unused")
    question = [{"role": "user", "content": QUESTION}]
    completion = client.chat.completions.create(model=MODEL_NAME, messages=question, temperature=0)
    sources = completion.model_extra["sources"]
    expected = grounding.ground(engine, question)
    assert [s["url"] for s in sources] == [s.url for s in expected.sources]
    assert sources[0]["title"] in ("Waxing skis at home", "Which wax for very cold days?")
    assert set(sources[0]) == {"number", "title", "author", "date", "url", "text", "score"}
    # the passages were in the prompt: the reply and its token count are those of the grounded question
    text, _, prompt_tokens, _ = engine.complete(expected.messages, max_new_tokens=REPLY_TOKENS, temperature=0)
    assert completion.choices[0].message.content == text
    assert completion.usage.prompt_tokens == prompt_tokens > len(engine.prompt_ids(question)) + 50

    linked = client.chat.completions.create(
        model=MODEL_NAME, messages=question, temperature=0, extra_body={"source_links": True}
    )
    assert linked.choices[0].message.content.startswith(text)
    first = sources[0]
    assert (
        f"[1] [{first['title']}]({first['url']}) ({first['author']}, {first['date']})"
        in linked.choices[0].message.content
    )

    plain = client.chat.completions.create(
        model=MODEL_NAME, messages=question, temperature=0, extra_body={"retrieval": False}
    )
    assert "sources" not in (plain.model_extra or {})
    assert plain.usage.prompt_tokens == len(engine.prompt_ids(question))


def test_a_stream_opens_with_the_sources_and_ends_with_the_links(grounded_url):
    client = OpenAI(base_url=f"{grounded_url}/v1", api_key="unused")
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            stream=True,
            extra_body={"source_links": True},
        )
    )
    sources = chunks[0].model_extra["sources"]
    assert len(sources) >= 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith(
        f"[{len(sources)}] [{sources[-1]['title']}]({sources[-1]['url']}) "
        f"({sources[-1]['author']}, {sources[-1]['date']})"
    )


def test_the_repl_lists_the_sources_of_the_last_reply(engine, grounding):
    console = memory_console()
    run_repl(
        engine,
        system_prompt=None,
        settings=SamplingSettings(max_new_tokens=REPLY_TOKENS, temperature=0),
        console=console,
        input_fn=scripted([QUESTION, "/sources", "/quit"]),
        grounding=grounding,
    )
    shown = output_of(console)
    expected = grounding.ground(engine, [{"role": "user", "content": QUESTION}]).sources
    assert f"({len(expected)} forum posts in the prompt: /sources lists them)" in shown
    for source in expected:
        assert f"[{source.number}] {source.title} ({source.author}, {source.date})" in shown
        assert source.url in shown


def test_the_repl_says_when_retrieval_is_off(engine):
    console = memory_console()
    run_repl(
        engine,
        system_prompt=None,
        settings=SamplingSettings(max_new_tokens=4, temperature=0),
        console=console,
        input_fn=scripted(["/sources", "/quit"]),
    )
    assert "Retrieval is off" in output_of(console)


def test_the_web_page_shows_the_sources_as_links_under_the_answer(grounded_url, engine, grounding):
    expected = grounding.ground(engine, [{"role": "user", "content": QUESTION}]).sources
    with chromium_page() as page:
        page.goto(grounded_url)
        page.wait_for_selector(f"#models button[data-model='{MODEL_NAME}'][aria-pressed='true']")
        page.fill("#prompt", QUESTION)
        page.press("#prompt", "Enter")
        page.wait_for_selector(".message.assistant[data-done='true']", timeout=30_000)
        links = page.locator(".message.assistant .sources a")
        shown = [
            (links.nth(i).text_content(), links.nth(i).get_attribute("href")) for i in range(links.count())
        ]
        bylines = page.locator(".message.assistant .sources .byline").all_text_contents()
        screenshot: Path = save_screenshot(page, "chat-web-page-sources.png")
    assert shown == [(s.title, s.url) for s in expected]
    assert bylines == [f"{s.author}, {s.date}" for s in expected]
    assert screenshot.stat().st_size > 5_000
