"""The search index file: one row per indexed post (a passage), and its BM25 full-text index.

It lives beside the forum store (RunLayout.search_index). Every post of the store has a row here,
in `passages` when it was indexed or in `skipped` when cleaning left too little of it, with a hash of
what it was made from: an update after a re-crawl cleans and indexes only the posts whose hash is new
or changed and deletes those gone from the store, so it ends where a build from scratch would.

Full text is SQLite FTS5 (an external-content table over `passages`, kept in step by triggers),
ranked by its bm25() with its defaults (k1 1.2, b 0.75, both columns weighted 1): nothing to run.

What a BM25 search means on a large index (tests/retrieval/reference.py computes the same by brute force):
the question's words less stopwords and less the words in over COMMON_TERM_SHARE of the passages; a
passage is a candidate when it holds one of the *anchor* words (the rarest of those words, taken while
the passages holding them add up to at most ANCHOR_POSTINGS), and candidates rank by BM25 over all of
the words. FTS5 scores every passage a query matches, so this bounds the work of a query on a million
posts without dropping the commoner words from the score.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_url TEXT NOT NULL,
    position INTEGER NOT NULL,
    source_hash TEXT NOT NULL,
    thread_id INTEGER NOT NULL,
    title TEXT NOT NULL,
    author TEXT,
    posted_at TEXT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (thread_url, position)
);
CREATE TABLE IF NOT EXISTS skipped (
    thread_url TEXT NOT NULL,
    position INTEGER NOT NULL,
    source_hash TEXT NOT NULL,
    PRIMARY KEY (thread_url, position)
);
CREATE VIRTUAL TABLE IF NOT EXISTS passage_text USING fts5(
    title, body, content='passages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS passages_added AFTER INSERT ON passages BEGIN
    INSERT INTO passage_text (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER IF NOT EXISTS passages_deleted AFTER DELETE ON passages BEGIN
    INSERT INTO passage_text (passage_text, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
"""
SETTINGS_KEY = "settings"  # what the passages were made with (cleaning, embedding model): a change rebuilds
EMBEDDING_MODEL_KEY = "embedding_model"  # the model dir of the dense vectors; queries are embedded with it
PASSAGE_COLUMNS = "id, thread_id, thread_url, position, title, author, posted_at, url, body"
# FTS5's unicode61 tokenizer splits on everything but letters and digits (underscore included).
TERM = re.compile(r"[^\W_]+")
# Words that match most posts and say nothing about the question: leaving them out of the OR query keeps
# a query on a million posts from scoring every one of them.
STOPWORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "too",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "just",
        "any",
        "some",
        "get",
        "got",
        "im",
        "ive",
        "dont",
        "about",
        "than",
        "very",
        "into",
        "out",
        "up",
    )
)

# A word in more than this share of the passages says little (its idf is under log(19) ≈ 2.9, a rare word's
# is 8 or more) and makes the query score every passage that has it: on large indexes it is left out of
# the query, unless every word of the question is that common (then the rarest two stay). Measured on
# 100k synthetic posts: p95 20 → 10 ms (benchmarks/retrieval.py).
COMMON_TERM_SHARE = 0.05
PRUNE_FROM_PASSAGES = 10_000  # below this every query is fast anyway, and every word counts
# FTS5 spends 1-2 microseconds per matching passage on bm25() (its length lookup and term counts), ten
# times what merging the words' posting lists costs: on 1M synthetic posts the words left of a question
# matched 26k passages at the median and 86k at p95. Only passages holding one of the rarer words are
# scored, at most this many unless the rarest word alone is in more. Measured at 1M on two busy cores
# (load average 11): p95 97 ms with 20k, 64 ms with 10k, 43 ms with 5k (benchmarks/retrieval.py).
# A larger budget ranks more passages by every word; raise it on a faster machine.
ANCHOR_POSTINGS = 5_000
MMAP_BYTES = 1 << 32  # the index read through the page cache without a copy: its posting lists and lengths

SourceKey = tuple[str, int]  # (thread URL, position in the thread): a post's identity across re-crawls


@dataclass(frozen=True)
class Passage:
    """One indexed post: what a prompt quotes and a reply cites."""

    id: int
    thread_id: int  # the forum store's thread id
    thread_url: str
    position: int
    title: str
    author: str | None
    posted_at: str | None
    url: str  # the page the post is on, with the post's anchor when the forum gives one
    text: str


@dataclass(frozen=True)
class NewPassage:
    key: SourceKey
    source_hash: str
    thread_id: int
    title: str
    author: str | None
    posted_at: str | None
    url: str
    text: str


@dataclass(frozen=True)
class Hit:
    passage_id: int
    score: float  # larger is better (BM25: minus FTS5's bm25(); dense: cosine similarity; hybrid: RRF)


def query_terms(question: str) -> list[str]:
    """The distinct words of a question that a search looks for, in order."""
    return list(dict.fromkeys(t for t in TERM.findall(question.lower()) if t not in STOPWORDS))


def match_expression(terms: Iterable[str]) -> str:
    """An FTS5 query matching any of the terms (each quoted, so no word is read as an operator)."""
    return " OR ".join(f'"{term}"' for term in terms)


def anchor_terms(terms: list[str], documents: dict[str, int], budget: int) -> list[str]:
    """The rarest of the terms, taken in order of how many passages hold them while those add up to at
    most `budget` (the rarest one always): a passage must hold one of them to be scored."""
    anchors, postings = [], 0
    for term in sorted(terms, key=lambda t: (documents.get(t, 0), terms.index(t))):
        postings += documents.get(term, 0)
        if anchors and postings > budget:
            break
        anchors.append(term)
    return [t for t in terms if t in anchors]


class SearchIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        self.db.executescript(SCHEMA)
        self.db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.passage_vocab USING fts5vocab(main, passage_text, 'row')"
        )
        self.prune_from = PRUNE_FROM_PASSAGES
        self.common_share = COMMON_TERM_SHARE
        self.anchor_postings = ANCHOR_POSTINGS
        # Counted once until the index changes (here or by another connection, PRAGMA data_version):
        # COUNT(*) scans the table, and fts5vocab reads a word's whole posting list to count it.
        self._count: int | None = None
        self._documents: dict[str, int] = {}
        self._data_version: int | None = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the index was made from
    def settings(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (SETTINGS_KEY,)).fetchone()
        return row[0] if row else None

    def embedding_model(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (EMBEDDING_MODEL_KEY,)).fetchone()
        return row[0] if row and row[0] else None

    def reset(self, settings: str, embedding_model: str | None) -> None:
        """Forget every passage (other settings make other passages) and remember the new settings."""
        self.db.executescript(
            "DROP TABLE IF EXISTS passage_text; DROP TABLE IF EXISTS passages; DROP TABLE IF EXISTS skipped;"
        )
        self.db.executescript(SCHEMA)
        self._changed()
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(SETTINGS_KEY, settings), (EMBEDDING_MODEL_KEY, embedding_model or "")],
            )

    def source_hashes(self) -> dict[SourceKey, str]:
        """The hash each post had when it was last indexed (or skipped)."""
        rows = self.db.execute(
            "SELECT thread_url, position, source_hash FROM passages UNION ALL "
            "SELECT thread_url, position, source_hash FROM skipped"
        )
        return {(url, position): digest for url, position, digest in rows}

    # --- changes (the caller commits: `with index.db:`)
    def _changed(self) -> None:
        self._count = None
        self._documents.clear()

    def _check_version(self) -> None:
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._changed()
            self._data_version = version

    def delete(self, keys: Iterable[SourceKey]) -> list[int]:
        """Remove these posts (passages or skipped); returns the ids of the passages removed."""
        removed = []
        self._changed()
        for url, position in keys:
            row = self.db.execute(
                "DELETE FROM passages WHERE thread_url = ? AND position = ? RETURNING id", (url, position)
            ).fetchone()
            if row is not None:
                removed.append(row[0])
            self.db.execute("DELETE FROM skipped WHERE thread_url = ? AND position = ?", (url, position))
        return removed

    def add(self, passages: Iterable[NewPassage]) -> list[int]:
        """Insert passages; returns their new ids (ids are never reused, so a vector key stays unique)."""
        ids = []
        self._changed()
        for p in passages:
            (new_id,) = self.db.execute(
                "INSERT INTO passages (thread_url, position, source_hash, thread_id, title, author, posted_at, url,"
                " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (*p.key, p.source_hash, p.thread_id, p.title, p.author, p.posted_at, p.url, p.text),
            ).fetchone()
            ids.append(new_id)
        return ids

    def skip(self, key: SourceKey, source_hash: str) -> None:
        self.db.execute(
            "INSERT INTO skipped (thread_url, position, source_hash) VALUES (?, ?, ?)", (*key, source_hash)
        )

    # --- reading
    def count(self) -> int:
        self._check_version()
        if self._count is None:
            self._count = self.db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
        return self._count

    def documents(self, terms: list[str]) -> dict[str, int]:
        """How many passages hold each term (0 for a term in none)."""
        self._check_version()
        unknown = [t for t in terms if t not in self._documents]
        if unknown:
            marks = ",".join("?" * len(unknown))
            found = dict(
                self.db.execute(f"SELECT term, doc FROM temp.passage_vocab WHERE term IN ({marks})", unknown)
            )
            self._documents.update((t, found.get(t, 0)) for t in unknown)
        return {t: self._documents[t] for t in terms}

    def search_terms(self, question: str) -> list[str]:
        """The question's words a BM25 search looks for: on a large index, without the very common ones."""
        terms = query_terms(question)
        total = self.count()
        if total < self.prune_from or len(terms) < 2:
            return terms
        documents = self.documents(terms)
        kept = [t for t in terms if documents[t] <= self.common_share * total]
        return kept or sorted(terms, key=lambda t: documents[t])[:2]

    def ids(self) -> list[int]:
        return [row[0] for row in self.db.execute("SELECT id FROM passages ORDER BY id")]

    def threads(self) -> dict[int, tuple[str, str]]:
        """Every thread with an indexed post: the store's thread id → (thread URL, title)."""
        rows = self.db.execute("SELECT DISTINCT thread_id, thread_url, title FROM passages")
        return {thread_id: (url, title) for thread_id, url, title in rows}

    def passages(self, ids: Iterable[int]) -> list[Passage]:
        """The passages with these ids, in the order given (ids no longer there are left out)."""
        wanted = list(ids)
        found: dict[int, Passage] = {}
        for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT {PASSAGE_COLUMNS} FROM passages WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = Passage(*row)
        return [found[i] for i in wanted if i in found]

    def iter_passages(self, batch: int = 1000) -> Iterable[list[Passage]]:
        """Every passage in id order, a batch at a time."""
        last = 0
        while True:
            rows = self.db.execute(
                f"SELECT {PASSAGE_COLUMNS} FROM passages WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            yield [Passage(*row) for row in rows]
            last = rows[-1][0]

    def bm25(self, question: str, k: int, terms: list[str] | None = None) -> list[Hit]:
        """The k passages holding an anchor word with the best BM25 score over all the question's words
        (ties: lower id first)."""
        terms = self.search_terms(question) if terms is None else terms
        if not terms:
            return []
        anchors = anchor_terms(terms, self.documents(terms), self.anchor_postings)
        others = [t for t in terms if t not in anchors]
        if not others:
            return self._top(match_expression(terms), k)
        # Two disjoint sets, each scored by bm25() over every word of its query, so over all the terms:
        # passages with anchors and none of the others (whose share of the score is then zero), and
        # passages with both. Neither query scores a passage that lacks every anchor.
        either, rest = match_expression(anchors), match_expression(others)
        found = self._top(f"({either}) NOT ({rest})", k) + self._top(f"({either}) AND ({rest})", k)
        return sorted(found, key=lambda hit: (-hit.score, hit.passage_id))[:k]

    def _top(self, expression: str, k: int) -> list[Hit]:
        rows = self.db.execute(
            "SELECT rowid, bm25(passage_text) AS score FROM passage_text WHERE passage_text MATCH ?"
            " ORDER BY score, rowid LIMIT ?",
            (expression, k),
        )
        return [Hit(passage_id, -score) for passage_id, score in rows]
