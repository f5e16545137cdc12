"""The `index` stage: the forum store's posts → the search index beside it (BM25, and dense vectors when a
local embedding model is installed), brought up to date after each crawl.

Posts are cleaned as `build` cleans them (build.urls, build.scrub_contacts). Only posts that are new or
changed since the last run are cleaned and embedded, and posts gone from the store are removed, so an
index updated after a re-crawl holds what one built from scratch would (tests/index/ checks it).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from forumtune.cleaning import clean_post, cleaning_steps
from forumtune.config import Config
from forumtune.errors import RetrievalError
from forumtune.forum_store import ForumStore, LocatedPost
from forumtune.layout import RunLayout
from forumtune.retrieval.search_index import NewPassage, SearchIndex, SourceKey
from forumtune.retrieval.vectors import VectorIndex
from forumtune.sentence_embedding import SentenceEmbedder, resolve_model_setting

INDEX_FORMAT = 1  # bump when what a passage is made of changes: every index is rebuilt once
EMBED_BATCH = 64


@dataclass
class Changes:
    """What an update does to the index: posts to drop (changed or gone) and what replaces them."""

    delete: list[SourceKey]
    add: list[NewPassage]
    skip: list[tuple[SourceKey, str]]
    unchanged: int


def embedding_model_dir(config: Config) -> Path | None:
    try:
        return resolve_model_setting(config.index.embedding_model, "index.embedding_model", "for BM25 alone")
    except ValueError as exc:
        raise RetrievalError(str(exc)) from None


def index_settings(config: Config, model_dir: Path | None) -> str:
    """What every passage depends on: a change rebuilds the index instead of updating it."""
    return json.dumps(
        {
            "format": INDEX_FORMAT,
            "urls": config.build.urls,
            "scrub_contacts": config.build.scrub_contacts,
            "min_chars": config.index.min_chars,
            "embedding_model": str(model_dir) if model_dir else None,
        },
        sort_keys=True,
    )


def source_hash(post: LocatedPost) -> str:
    return hashlib.sha1(json.dumps(astuple(post)).encode()).hexdigest()


def post_url(post: LocatedPost) -> str:
    return f"{post.page_url}#{post.external_id}" if post.external_id else post.page_url


def find_changes(store: ForumStore, known: dict[SourceKey, str], config: Config) -> Changes:
    """Compare the store with what the index was made from; clean only the posts that are new or changed."""
    steps = cleaning_steps(config.build.urls, config.build.scrub_contacts)
    changes = Changes([], [], [], 0)
    seen: set[SourceKey] = set()
    for post in store.iter_located_posts():
        key, digest = (post.thread_url, post.position), source_hash(post)
        seen.add(key)
        if known.get(key) == digest:
            changes.unchanged += 1
            continue
        if key in known:
            changes.delete.append(key)
        text = clean_post(post.text, signature=post.signature, steps=steps, stats=Counter())
        if len(text) < config.index.min_chars:
            changes.skip.append((key, digest))
        else:
            changes.add.append(
                NewPassage(
                    key, digest, post.thread_id, post.title, post.author, post.posted_at, post_url(post), text
                )
            )
    changes.delete += [key for key in known if key not in seen]
    return changes


def embed_passages(embedder: SentenceEmbedder, texts: list[str]) -> np.ndarray:
    chunks = [
        embedder.embed(texts[start : start + EMBED_BATCH], batch_size=EMBED_BATCH).numpy()
        for start in range(0, len(texts), EMBED_BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, embedder.dimensions), dtype=np.float32)


def embedding_text(title: str, text: str) -> str:
    return f"{title}\n{text}"


def update_vectors(
    index: SearchIndex,
    vector_path: Path,
    embedder: SentenceEmbedder,
    ids_before: list[int],
    removed: list[int],
    added: list[int],
    changes: Changes,
) -> int:
    """Bring the vector file in step with the passages; returns how many passages were embedded."""
    vectors = VectorIndex(vector_path, embedder.dimensions)
    if vectors.matches(ids_before):
        vectors.remove(removed)
        texts = [embedding_text(p.title, p.text) for p in changes.add]
        vectors.add(added, embed_passages(embedder, texts))
        embedded = len(added)
    else:  # the file is not what the index was made with (a run killed between the writes): redo it
        vectors.clear()
        embedded = 0
        for batch in index.iter_passages(batch=1024):
            texts = [embedding_text(p.title, p.text) for p in batch]
            vectors.add([p.id for p in batch], embed_passages(embedder, texts))
            embedded += len(batch)
    vectors.save()
    return embedded


def run_index(config: Config, run_dir: Path, console: Console) -> dict[str, Any]:
    layout = RunLayout.of(config, run_dir)
    if not layout.forum_store.exists():
        raise RetrievalError(f"no forum store at {layout.forum_store}: run `forumtune scrape` first")
    model_dir = embedding_model_dir(config)
    settings = index_settings(config, model_dir)
    with SearchIndex(layout.search_index) as index, ForumStore(layout.forum_store) as store:
        if index.settings() != settings:
            index.reset(settings, str(model_dir) if model_dir else None)
            layout.vector_index.unlink(missing_ok=True)
        with console.status("comparing the store with the index..."):
            changes = find_changes(store, index.source_hashes(), config)
        ids_before = index.ids()
        embedded = 0
        with index.db:  # one transaction: a killed update leaves the index as it was
            removed = index.delete(changes.delete)
            added = index.add(changes.add)
            for key, digest in changes.skip:
                index.skip(key, digest)
            if model_dir is not None:
                embedder = SentenceEmbedder(
                    model_dir, torch.device("cuda" if torch.cuda.is_available() else "cpu")
                )
                with console.status(f"embedding {len(added)} passages..."):
                    embedded = update_vectors(
                        index, layout.vector_index, embedder, ids_before, removed, added, changes
                    )
        summary = {
            "passages": index.count(),
            "added": len(added),
            "removed": len(removed),
            "skipped": len(changes.skip),
            "unchanged": changes.unchanged,
            "embedded": embedded,
            "vectors": model_dir is not None,
        }
    if model_dir is None:
        layout.vector_index.unlink(missing_ok=True)
    console.print(
        f"indexed {summary['passages']} passages ({summary['added']} added, {summary['removed']} removed, "
        f"{summary['unchanged']} unchanged); "
        + (
            "dense vectors on"
            if model_dir
            else "BM25 only (index.embedding_model: null, or auto without the embeddings extra)"
        )
    )
    return summary
