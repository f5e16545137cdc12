"""Benchmark of `forumtune import`: a synthetic Stack Exchange Posts.xml and a synthetic pair of Pushshift
Reddit archives (submissions, comments), 1,000,000 posts each by default, imported into a fresh SQLite
store, each in its own process so its peak RSS is its own. Prints a table and writes
benchmarks/results/import_dumps.json: posts, wall seconds, posts per second, peak RSS (target: < 500 MB).

    .venv/bin/python benchmarks/import_dumps.py                  # 1M posts in each format
    .venv/bin/python benchmarks/import_dumps.py --posts 100000   # a quick look
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
from html import escape
from pathlib import Path

from synthetic_text import sentence

ANSWERS_PER_QUESTION = 3


def body(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))


def write_stackexchange(path: Path, posts: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        post_id = 0
        while post_id < posts:
            question = post_id = post_id + 1
            accepted = question + rng.randint(1, ANSWERS_PER_QUESTION)
            html = escape(f"<p>{body(rng)}</p>")
            out.write(
                f'  <row Id="{question}" PostTypeId="1" AcceptedAnswerId="{accepted}" '
                f'CreationDate="2019-01-07T19:50:00.000" Score="{rng.randint(-2, 50)}" Body="{html}" '
                f'OwnerUserId="{rng.randint(1, 5000)}" Title="{escape(sentence(rng))}" />\n'
            )
            for _ in range(ANSWERS_PER_QUESTION):
                post_id += 1
                html = escape(f"<blockquote><p>{sentence(rng)}</p></blockquote><p>{body(rng)}</p>")
                out.write(
                    f'  <row Id="{post_id}" PostTypeId="2" ParentId="{question}" '
                    f'CreationDate="2019-01-08T08:15:00.000" Score="{rng.randint(-2, 50)}" Body="{html}" '
                    f'OwnerUserId="{rng.randint(1, 5000)}" />\n'
                )
        out.write("</posts>\n")


def write_reddit(submissions: Path, comments: Path, posts: int, rng: random.Random) -> None:
    with submissions.open("w") as subs, comments.open("w") as coms:
        written = 0
        while written < posts:
            sid = f"s{written}"
            subs.write(
                json.dumps(
                    {
                        "id": sid,
                        "title": sentence(rng),
                        "selftext": body(rng),
                        "author": "op",
                        "created_utc": 1546890600,
                        "score": rng.randint(0, 99),
                    }
                )
                + "\n"
            )
            written += 1
            for n in range(ANSWERS_PER_QUESTION):
                parent = f"t1_c{written - 1}" if n else f"t3_{sid}"
                coms.write(
                    json.dumps(
                        {
                            "id": f"c{written}",
                            "link_id": f"t3_{sid}",
                            "parent_id": parent,
                            "body": body(rng),
                            "author": f"u{rng.randint(1, 5000)}",
                            "created_utc": 1546935300,
                            "score": rng.randint(-5, 99),
                        }
                    )
                    + "\n"
                )
                written += 1


def run_one(dump_format: str, paths: list[Path], store: Path) -> dict[str, float]:
    """In this (child) process: import, then report what it took."""
    from rich.console import Console

    from forumtune.scrape.dumps import run_import

    started = time.perf_counter()
    summary = run_import(dump_format, paths, store, Console(quiet=True))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "posts": summary.posts,
        "threads": summary.threads,
        "seconds": round(seconds, 1),
        "posts_per_second": round(summary.posts / seconds),
        "peak_rss_mb": round(peak_mb),
        "dump_mb": round(sum(path.stat().st_size for path in paths) / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dump_format, store, *paths = args.child
        print(json.dumps(run_one(dump_format, [Path(path) for path in paths], Path(store))))
        return
    rng = random.Random(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_stackexchange(root / "Posts.xml", args.posts, rng)
        write_reddit(root / "RS.jsonl", root / "RC.jsonl", args.posts, rng)
        jobs = {"stackexchange": [root / "Posts.xml"], "reddit": [root / "RS.jsonl", root / "RC.jsonl"]}
        for dump_format, paths in jobs.items():
            command = [
                sys.executable,
                __file__,
                "--child",
                dump_format,
                str(root / f"{dump_format}.sqlite"),
                *map(str, paths),
            ]
            output = subprocess.run(
                command, check=True, capture_output=True, text=True, env=os.environ
            ).stdout
            results[dump_format] = json.loads(output.strip().splitlines()[-1])
    print(
        f"{'format':14s} {'posts':>9s} {'dump MB':>8s} {'seconds':>8s} {'posts/s':>8s} {'peak RSS MB':>12s}"
    )
    for name, result in results.items():
        print(
            f"{name:14s} {result['posts']:9d} {result['dump_mb']:8d} {result['seconds']:8.1f} "
            f"{result['posts_per_second']:8d} {result['peak_rss_mb']:12d}"
        )
    out = Path(__file__).parent / "results" / "import_dumps.json"
    out.write_text(
        json.dumps({"posts_requested": args.posts, "cpu_count": os.cpu_count(), **results}, indent=2)
    )


if __name__ == "__main__":
    main()
