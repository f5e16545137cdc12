import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.forum_store import ForumStore
from forumtune.scrape.crawler import crawl
from tests.conftest import write_config

FAST = {"requests_per_second": 500, "concurrency": 4}


def all_posts(store_path: Path) -> list[tuple]:
    db = sqlite3.connect(store_path)
    rows = db.execute(
        "SELECT t.url, p.position, p.external_id, p.author, p.posted_at, p.text, p.quotes, p.signature"
        " FROM posts p JOIN threads t ON t.id = p.thread_id ORDER BY t.url, p.position"
    ).fetchall()
    db.close()
    return rows


def test_crawls_every_thread_and_post_and_obeys_robots(forum_server, tmp_path):
    base_url, requests = forum_server
    summary = crawl(
        ScrapeConfig(url=f"{base_url}/forums/freeski/", **FAST),
        tmp_path / "f.sqlite",
        f"{base_url}/forums/freeski/",
        show_progress=False,
    )
    assert (summary.threads, summary.posts, summary.list_pages, summary.thread_pages) == (81, 721, 5, 121)
    assert summary.errors == {}
    assert requests[0] == "/robots.txt"
    assert not [path for path in requests if path.startswith("/members/")]
    assert len(requests) == len(set(requests)), "no page is fetched twice"
    with ForumStore(tmp_path / "f.sqlite") as store:
        threads = store.threads()
        assert all(thread.done for thread in threads)
        posts = [post for _, thread_posts in store.iter_thread_posts() for post in thread_posts]
    quoted = [post for post in posts if post.quotes]
    assert len(quoted) == 133
    assert all(len(post.quotes) == 1 for post in quoted), (
        "a nested quote stays inside the quote that holds it"
    )
    assert all("wrote:" not in post.text for post in posts), "quotes are kept apart from the post's own words"
    assert all("Moved from" not in post.text for post in posts), "moderator notes are dropped"
    signed = [post for post in posts if post.signature]
    assert len(signed) == 223
    assert all(post.signature not in post.text for post in signed)


def test_limits_and_max_pages(forum_server, tmp_path):
    base_url, _ = forum_server
    config = ScrapeConfig(url="", max_threads=5, max_pages_per_thread=1, **FAST)
    summary = crawl(config, tmp_path / "f.sqlite", f"{base_url}/forums/freeski/", show_progress=False)
    assert summary.threads == 5 and summary.thread_pages == 5 and summary.list_pages == 1


def test_unreachable_forums_say_why_dns_refused_timeout_or_tls(forum_server, tmp_path):
    config = ScrapeConfig(url="", retries=0, timeout_s=0.5, **FAST)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # released below: nothing listens there
    silent = socket.socket()  # listens, never answers: the request times out
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    cases = [
        (
            "http://forum.invalid/forums/",  # RFC 6761: never resolves, no server is asked
            r"the host name forum\.invalid does not resolve .*check the host name in scrape\.url",
        ),
        (
            f"http://127.0.0.1:{closed}/forums/",
            rf"127\.0\.0\.1:{closed} refused the connection .*check the address and port",
        ),
        (
            f"http://127.0.0.1:{silent.getsockname()[1]}/forums/",
            r"127\.0\.0\.1:\d+ sent nothing for scrape\.timeout_s=0\.5 s; raise scrape\.timeout_s",
        ),
    ]
    # https to a server that speaks plain HTTP: the TLS handshake fails
    cases.append(
        (forum_server[0].replace("http://", "https://") + "/forums/", r"the TLS handshake with .* failed")
    )
    with silent:
        for number, (url, message) in enumerate(cases):
            with pytest.raises(
                ScrapeError, match=rf"cannot read the forum's thread list {re.escape(url)}: {message}"
            ):
                crawl(config, tmp_path / f"{number}.sqlite", url, show_progress=False)


def test_sigkill_mid_crawl_then_resume_equals_an_uninterrupted_crawl(tmp_path):
    slow = write_config(tmp_path / "a", scrape={"requests_per_second": 40, "concurrency": 2})
    whole = write_config(tmp_path / "b", scrape=FAST)
    command = [sys.executable, "-m", "forumtune.cli", "scrape"]
    store = tmp_path / "a" / "runs" / "demo" / "forum.sqlite"
    process = subprocess.Popen(command + [str(slow)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if store.exists() and len(all_posts(store)) > 100:
                break
        except sqlite3.OperationalError:  # the crawler has not created its tables yet
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the crawl finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = len(all_posts(store))
    assert 0 < partial < 721
    subprocess.run(
        command + [str(slow), "--set", "scrape.requests_per_second=500"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(command + [str(whole)], check=True, stdout=subprocess.DEVNULL)
    resumed, uninterrupted = all_posts(store), all_posts(tmp_path / "b" / "runs" / "demo" / "forum.sqlite")
    assert len(resumed) == 721
    assert resumed == uninterrupted
