"""Benchmark of the build stage: a synthetic forum of 8,000 threads × 10 pages (8 posts a page) in a real
SQLite store, built (clean, pair, filter, template, tokenize, mask) with the built-in tiny model's
tokenizer. Prints a table and writes benchmarks/results/build.json: wall and CPU seconds of the build
(CPU seconds do not grow when other work shares the cores; the load average says how much did).

    .venv/bin/python benchmarks/build.py                 # the full size (target: under 60 s on 2 cores)
    .venv/bin/python benchmarks/build.py --threads 500   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic_text import sentence

from forumtune.forum_store import ForumStore, ScrapedPost, ThreadRef

ARTIFACTS = [
    "",
    "",
    "",
    " :D",
    " https://www.example.com/gear?id={n}",
    " [b]really[/b]",
    " <i>honestly</i>",
    "\n**This post was edited on Jan 13th 2022 at 9:58:47pm",
    "\n[quote=someone]earlier text[/quote]",
    " mail me at rider{n}@example.com",
    "\nSent from my iPhone using Tapatalk",
]


def post_text(rng: random.Random, number: int) -> str:
    body = " ".join(sentence(rng) for _ in range(rng.randint(1, 5)))
    return body + rng.choice(ARTIFACTS).format(n=number)


def write_forum(path: Path, threads: int, pages: int, posts_per_page: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    posts = 0
    with ForumStore(path) as store:
        store.add_list_page(
            "http://127.0.0.1/list",
            [
                ThreadRef(url=f"http://127.0.0.1/t/{n}", title=f"Thread {n}: " + sentence(rng))
                for n in range(threads)
            ],
            None,
        )
        for thread in store.threads():
            for page in range(pages):
                page_posts = [
                    ScrapedPost(
                        external_id=None,
                        author=f"user{rng.randint(0, 500)}",
                        posted_at=None,
                        text=post_text(rng, posts + i),
                    )
                    for i in range(posts_per_page)
                ]
                posts += len(page_posts)
                store.add_thread_page(thread.id, None, page_posts, None, page == pages - 1)
    return posts


def build_in_child(store: Path, out_dir: Path) -> dict:
    """The build in a fresh process, so its peak memory is the build's alone."""
    code = (
        "import json, resource, sys, time\n"
        "from pathlib import Path\n"
        "from rich.console import Console\n"
        "from forumtune.config import Config\n"
        "from forumtune.data.build import run_build\n"
        "config = Config.model_validate({'name': 'bench', 'scrape': {'url': '/'}})\n"
        "started = time.perf_counter()\n"
        "stats = run_build(config, Path(sys.argv[1]), Path(sys.argv[2]), Console(quiet=True))\n"
        "seconds = time.perf_counter() - started\n"
        "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps({'seconds': seconds, 'cpu_seconds': usage.ru_utime + usage.ru_stime,\n"
        "                  'peak_rss_mib': usage.ru_maxrss / 1024, 'stats': stats}))\n"
    )
    # The tokenizer is made once beforehand, so the timing is the build's, not the first-use setup.
    subprocess.run(
        [
            sys.executable,
            "-c",
            ("from forumtune.base_model import load_tokenizer; load_tokenizer('builtin:tiny-llama')"),
        ],
        check=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(store), str(out_dir)], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=8000)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--posts-per-page", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "build.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "forum.sqlite"
        started = time.perf_counter()
        posts = write_forum(store, args.threads, args.pages, args.posts_per_page)
        setup_s = time.perf_counter() - started
        measured = build_in_child(store, Path(scratch) / "dataset")
    stats = measured["stats"]
    row = {
        "threads": args.threads,
        "pages_per_thread": args.pages,
        "posts": posts,
        "examples": stats["train_examples"] + stats["eval_examples"],
        "tokens": stats["train_tokens"] + stats["eval_tokens"],
        "build_s": round(measured["seconds"], 1),
        "build_cpu_s": round(measured["cpu_seconds"], 1),
        "load_average": round(os.getloadavg()[0], 1),
        "peak_rss_mib": round(measured["peak_rss_mib"]),
        "store_setup_s": round(setup_s, 1),
        "filtered": stats["filtered"],
        "cleaned": stats["cleaned"],
    }
    print(
        f"{'threads':>8} {'posts':>9} {'examples':>9} {'tokens':>11} {'build s':>8} {'CPU s':>7} {'peak MiB':>9} "
        f"{'load':>5}"
    )
    print(
        f"{row['threads']:>8} {row['posts']:>9} {row['examples']:>9} {row['tokens']:>11} {row['build_s']:>8} "
        f"{row['build_cpu_s']:>7} {row['peak_rss_mib']:>9} {row['load_average']:>5}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    print(
        f"written {args.out}; own CPU time of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.0f} s"
    )


if __name__ == "__main__":
    main()
