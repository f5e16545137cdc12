"""The bundled demo forum is what scripts/make_demo_forum.py writes, and its same-question labels name
real threads that ask again, in other words, what an earlier thread asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_FORUM, ROOT


def test_the_committed_forum_is_what_the_generator_writes(tmp_path):
    out = tmp_path / "forum"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_demo_forum.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(DEMO_FORUM) for p in DEMO_FORUM.rglob("*") if p.is_file())
    assert written == committed
    changed = [p for p in written if (out / p).read_bytes() != (DEMO_FORUM / p).read_bytes()]
    assert not changed, f"regenerate the forum: python scripts/make_demo_forum.py ({changed[:3]} differ)"


def thread_title(url: str) -> str:
    page = (DEMO_FORUM / url.strip("/") / "index.html").read_text(encoding="utf-8")
    return page.split('<h1 class="thread-title">', 1)[1].split("</h1>", 1)[0]


def test_same_question_groups_name_threads_the_crawl_finds_by_other_titles():
    groups = json.loads((DEMO_FORUM / "same_questions.json").read_text())["groups"]
    assert len(groups) == 15 and all(len(group) == 2 for group in groups)
    urls = [url for group in groups for url in group]
    assert len(set(urls)) == len(urls), "a thread is in one group only"
    listed = "".join(p.read_text(encoding="utf-8") for p in (DEMO_FORUM / "forums").rglob("*.html"))
    for first, again in groups:
        assert f'href="{first}"' in listed and f'href="{again}"' in listed, "both threads are crawled"
        assert int(Path(first).name.split("-")[0]) < int(Path(again).name.split("-")[0]), "asked again later"
        assert thread_title(first) != thread_title(again)
    assert "same_questions.json" not in listed, "the labels are not a page of the forum"
