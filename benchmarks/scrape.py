"""Scraper throughput: crawl a local phpBB-style forum of 2,000 threads × 5 pages with the rate limit off.

    python benchmarks/scrape.py [--threads 2000] [--pages 5] [--repeat 3] [--concurrency 8]

The forum is generated on the fly by a small asyncio HTTP server in a subprocess (no fixture files):
list pages of 50 threads, thread pages of 10 posts with quotes and signatures, ~40 KB each, about the
size of a real phpBB page. The crawl is forumtune's own (`forumtune.scrape.crawler.crawl`, profile
`phpbb`) writing a real SQLite store. Prints a table; writes benchmarks/results/scrape.json.
Peak memory is the maximum resident set size of the crawling process and of its page-parsing worker
(the server runs in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

THREADS_PER_LIST_PAGE = 50
POSTS_PER_PAGE = 10
RESULTS = Path(__file__).parent / "results" / "scrape.json"
WORDS = [
    "wax",
    "edge",
    "base",
    "camber",
    "rocker",
    "powder",
    "groomer",
    "park",
    "boots",
    "bindings",
    "skins",
    "touring",
    "avalanche",
    "moguls",
    "carve",
    "slush",
    "ice",
    "tree",
    "chute",
    "cornice",
    "lift",
    "pass",
    "season",
    "tune",
    "ptex",
    "sidewall",
    "core",
]
# Real forum pages carry a lot besides the posts: navigation, inline scripts, footers.
CHROME = "".join(
    f'<li class="nav-item"><a href="/viewforum.php?f={i}" title="Board {i}">Board number {i}</a></li>'
    for i in range(120)
)
SCRIPT = "<script>var phpbb = {};" + "phpbb.option%d = 'value';" * 200 % tuple(range(200)) + "</script>"


def words(seed: int, count: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(count))


def layout(title: str, body: str, next_href: str | None) -> str:
    nav = f'<li class="arrow next"><a href="{next_href}" rel="next">Next</a></li>' if next_href else ""
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>{SCRIPT}</head><body>'
        f'<div id="wrap"><ul class="nav-main">{CHROME}</ul><div class="pagination"><ul>{nav}</ul></div>'
        f'{body}<div class="footer"><ul>{CHROME}</ul></div></div></body></html>'
    )


def list_page(start: int, threads: int) -> str:
    rows = "".join(
        f'<li class="row"><dl class="row-item"><dt><div class="list-inner"><a href="/viewtopic.php?t={t}" '
        f'class="topictitle">Thread {t}: {words(t, 6)}</a></div></dt><dd class="posts">49 <dfn>Replies</dfn></dd>'
        f'<dd class="lastpost"><span>by <a class="username">user{t % 97}</a> <time datetime="2024-01-{1 + t % 28:02d}'
        f'T10:00:00+00:00">Jan 2024</time></span></dd></dl></li>'
        for t in range(start, min(start + THREADS_PER_LIST_PAGE, threads))
    )
    more = start + THREADS_PER_LIST_PAGE < threads
    return layout(
        "Board",
        f'<ul class="topiclist topics">{rows}</ul>',
        f"/viewforum.php?f=1&amp;start={start + THREADS_PER_LIST_PAGE}" if more else None,
    )


def thread_page(thread: int, page: int, pages: int) -> str:
    posts = []
    for n in range(POSTS_PER_PAGE):
        post_id = (thread * pages + page) * POSTS_PER_PAGE + n
        quote = f"<blockquote><div><cite>user{post_id % 89} wrote:</cite>{words(post_id + 1, 30)}</div></blockquote>"
        posts.append(
            f'<div id="p{post_id}" class="post bg2"><div class="inner"><div class="postbody">'
            f'<p class="author">by <strong><a class="username">user{post_id % 97}</a></strong> » '
            f'<time datetime="2024-01-{1 + post_id % 28:02d}T{post_id % 24:02d}:15:00+00:00">Jan 2024</time></p>'
            f'<div class="content">{quote if n % 3 == 1 else ""}{words(post_id, 120)}<br>{words(post_id + 2, 60)}</div>'
            f'<div class="signature">sig of user{post_id % 97}: {words(post_id + 3, 8)}</div></div></div></div>'
        )
    more = page + 1 < pages
    next_href = f"/viewtopic.php?t={thread}&amp;start={(page + 1) * POSTS_PER_PAGE}" if more else None
    return layout(
        f"Thread {thread}", f'<h2 class="topic-title">Thread {thread}</h2>{"".join(posts)}', next_href
    )


def respond(target: str, threads: int, pages: int) -> tuple[int, bytes]:
    parts = urlsplit(target)
    query = {key: int(values[0]) for key, values in parse_qs(parts.query).items() if values[0].isdigit()}
    if parts.path == "/robots.txt":
        return 200, b"User-agent: *\nDisallow: /memberlist.php\n"
    if parts.path == "/viewforum.php":
        return 200, list_page(query.get("start", 0), threads).encode()
    if parts.path == "/viewtopic.php" and query.get("t", threads) < threads:
        return 200, thread_page(query["t"], query.get("start", 0) // POSTS_PER_PAGE, pages).encode()
    return 404, b"not found"


async def serve(threads: int, pages: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.readline():
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                status, body = respond(request.split()[1].decode(), threads, pages)
                head = f"HTTP/1.1 {status} OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head.encode() + body)
                await writer.drain()
        except (ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def cpu_seconds(pid: int | None = None, who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU time of this process (who=RUSAGE_CHILDREN: of its finished children, i.e. the
    crawl's page-parsing worker), or of another process (Linux /proc)."""
    if pid is None:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crawl_once(port: int, server_pid: int, threads: int, pages: int, concurrency: int) -> dict[str, float]:
    from forumtune.config import ScrapeConfig
    from forumtune.scrape.crawler import crawl

    config = ScrapeConfig(
        url="", site="phpbb", requests_per_second=0, concurrency=concurrency, max_pages_per_thread=pages
    )
    with tempfile.TemporaryDirectory() as folder:
        cpu_before, server_before, started = cpu_seconds(), cpu_seconds(server_pid), time.perf_counter()
        worker_before = cpu_seconds(who=resource.RUSAGE_CHILDREN)
        summary = crawl(
            config,
            Path(folder) / "forum.sqlite",
            f"http://127.0.0.1:{port}/viewforum.php?f=1",
            show_progress=False,
        )
        seconds = time.perf_counter() - started
        crawler_cpu, server_cpu = cpu_seconds() - cpu_before, cpu_seconds(server_pid) - server_before
        worker_cpu = cpu_seconds(who=resource.RUSAGE_CHILDREN) - worker_before
    assert summary.threads == threads and summary.thread_pages == threads * pages, summary
    assert summary.errors == {}, summary.errors
    fetched = summary.list_pages + summary.thread_pages
    return {
        "pages": fetched,
        "posts": summary.posts,
        "seconds": round(seconds, 2),
        "pages_per_second": round(fetched / seconds, 1),
        "mbytes": round(summary.bytes / 2**20, 1),
        "crawler_cpu_s": round(crawler_cpu, 2),
        "parse_worker_cpu_s": round(worker_cpu, 2),
        "server_cpu_s": round(server_cpu, 2),
        # Three processes (crawler, its parse worker, the server) share two cores: on two cores of
        # their own, the crawler's event loop (one thread) or the total CPU over two sets the pace.
        # Wall time on a loaded machine says less than this.
        "two_core_estimate_pages_per_second": round(
            fetched / max(crawler_cpu, (crawler_cpu + worker_cpu + server_cpu) / 2), 1
        ),
    }


def parse_only(pages: int) -> float:
    """Thread pages the phpBB profile parses per CPU-second: the ceiling parsing alone puts on a crawl."""
    from forumtune.scrape.sites import builtin_profiles

    profile = builtin_profiles()["phpbb"]
    html = thread_page(7, 1, pages)
    started = time.process_time()
    for _ in range(300):
        profile.parse_thread_page(html, "http://127.0.0.1/viewtopic.php?t=7&start=10")
    return round(300 / (time.process_time() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2000)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.threads, args.pages))
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--threads", str(args.threads), "--pages", str(args.pages)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline())
        load_before = os.getloadavg()
        runs = [
            crawl_once(port, server.pid, args.threads, args.pages, args.concurrency)
            for _ in range(args.repeat)
        ]
        load_after = os.getloadavg()
        worker_peak_mib = (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        )  # before the server's end
    finally:
        server.terminate()
        server.wait()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "forum": {
            "threads": args.threads,
            "pages_per_thread": args.pages,
            "posts_per_page": POSTS_PER_PAGE,
            "page_kib": round(len(thread_page(1, 1, args.pages).encode()) / 1024, 1),
        },
        "concurrency": args.concurrency,
        "runs": runs,
        "parse_only_pages_per_cpu_second": parse_only(args.pages),
        "peak_rss_mib": round(peak_mib, 1),
        "parse_worker_peak_rss_mib": round(worker_peak_mib, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"forum: {args.threads} threads × {args.pages} pages, {result['forum']['page_kib']} KiB a thread page, "
        f"concurrency {args.concurrency}, rate limit off"
    )
    print(
        f"{'run':>4} {'pages':>7} {'seconds':>8} {'pages/s':>8} {'MiB read':>9} {'crawler CPU s':>14} "
        f"{'worker CPU s':>13} {'server CPU s':>13} {'2-core est. pages/s':>20}"
    )
    for number, run in enumerate(runs, start=1):
        print(
            f"{number:>4} {run['pages']:>7} {run['seconds']:>8} {run['pages_per_second']:>8} {run['mbytes']:>9} "
            f"{run['crawler_cpu_s']:>14} {run['parse_worker_cpu_s']:>13} {run['server_cpu_s']:>13} "
            f"{run['two_core_estimate_pages_per_second']:>20}"
        )
    print(f"parse only (phpbb profile): {result['parse_only_pages_per_cpu_second']} pages per CPU-second")
    print(
        f"peak RSS of the crawling process: {result['peak_rss_mib']} MiB, "
        f"of its page-parsing worker: {result['parse_worker_peak_rss_mib']} MiB"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
