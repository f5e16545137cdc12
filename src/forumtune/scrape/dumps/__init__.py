"""`forumtune import CONFIG --format stackexchange|reddit PATH...`: a site's dump into the forum store.

Each format is one module that turns the dump's rows, streamed, into `DumpRow`s (a thread, or a post of
a thread); `writer.import_rows` stores them in batches together with how many rows are done, so memory
stays bounded whatever the dump's size and a killed import resumes where its last batch ended.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from forumtune.errors import ScrapeError
from forumtune.forum_store import ForumStore
from forumtune.scrape.dumps import reddit, stackexchange
from forumtune.scrape.dumps.writer import ImportSummary, import_rows

READERS = {"stackexchange": stackexchange.read_dump_file, "reddit": reddit.read_jsonl}


def run_import(dump_format: str, paths: list[Path], store_path: Path, console: Console) -> ImportSummary:
    if dump_format not in READERS:
        raise ScrapeError(f"--format {dump_format!r} is unknown; pick one of {sorted(READERS)}")
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise ScrapeError(
            f"{missing[0]} is not a file: give the dump's Posts.xml (then Comments.xml if wanted) "
            "for stackexchange, or its JSON lines files, submissions first, for reddit"
        )
    summary = ImportSummary()
    with ForumStore(store_path) as store:
        for path in paths:
            import_rows(store, path, READERS[dump_format](path), summary, console)
        console.print(
            f"imported {summary.threads} threads and {summary.posts} posts from {len(paths)} file(s) "
            f"into {store_path} ({store.thread_count()} threads, {store.post_count()} posts in all)"
            + (f"; skipped: {dict(summary.skipped)}" if summary.skipped else "")
        )
    return summary
