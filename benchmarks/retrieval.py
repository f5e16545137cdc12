"""The search index at scale: build time and size, query latency (p50/p95) for BM25 and hybrid search,
and the vector stores compared, on synthetic forums of 10k, 100k and 1M posts.

    nice python benchmarks/retrieval.py [--posts 10000 100000 1000000] [--queries 200]
                                        [--embedding-model DIR] [--compare-stores 100000 1000000]
                                        [--keep DIR] [--hybrid-max N --vectors-of N]
                                        [--embedding-backend auto|torch|onnx]

--keep builds each forum and its indexes once in DIR and reuses them on later runs (the 1M index takes
minutes to build, its figures are kept beside it in build.json), so query latency can be measured again
without building again.

Posts are made of words drawn from a Zipf distribution (s = 1.07) over a vocabulary whose most frequent
words are English function words and whose other 40k are made up, 20-120 words long, ten to a thread:
frequent words then match a large share of the posts, as "ski" does on a ski forum, which is what makes
an OR query over a million posts slow. The store is written directly (the crawl is not measured) and the
index is built by `forumtune.index.stage.run_index`, cleaning included, with BM25 alone.

Dense vectors: embedding a million posts with all-MiniLM-L6-v2 takes hours on two cores, so the vector
index holds clustered random unit vectors (384 dims, as MiniLM's) added by the real code
(retrieval/vectors.py); the embedding time per passage is measured on 256 posts and reported apart.
A hybrid query is the real path: the question embedded by the model, the vector search, BM25, fusion.
The model runs as a search runs it (`--embedding-backend auto`: onnxruntime when installed, else torch).

`--compare-stores` measures usearch (HNSW) and FAISS (HNSW), both with 32 links per node and a search
breadth of 128, and an exact scan (what sqlite-vec's vec0 does; sqlite-vec itself needs an sqlite3 that
loads extensions) on the same vectors: build time, size, latency and recall@10 against exact search.

Prints a table; writes benchmarks/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from forumtune.config import Config
from forumtune.forum_store import ForumStore
from forumtune.index.stage import run_index
from forumtune.layout import RunLayout
from forumtune.retrieval.retriever import CANDIDATES, Retriever
from forumtune.retrieval.search_index import STOPWORDS, SearchIndex
from forumtune.retrieval.vectors import CONNECTIVITY, EXPANSION_SEARCH, VectorIndex
from forumtune.sentence_embedding import SentenceEmbedder, bundled_model_dir

RESULTS = Path(__file__).parent / "results" / "retrieval.json"
VOCABULARY = 40_000
ZIPF_S = 1.07
POSTS_PER_THREAD = 10
DIMENSIONS = 384
CLUSTERS = 2_000
SEED = 0


# ------------------------------------------------------------------------------------------ synthetic forum
def vocabulary(rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    made_up = {"".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(VOCABULARY * 2)}
    words = sorted(STOPWORDS) + sorted(made_up - STOPWORDS)[:VOCABULARY]
    order = rng.permutation(len(words) - len(STOPWORDS)) + len(STOPWORDS)
    return sorted(STOPWORDS) + [words[i] for i in order]  # function words are the most frequent


def zipf_weights(size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** ZIPF_S
    return weights / weights.sum()


def synthetic_texts(count: int, words: list[str], rng: np.random.Generator, low: int, high: int) -> list[str]:
    lengths = rng.integers(low, high, size=count)
    drawn = rng.choice(len(words), size=int(lengths.sum()), p=zipf_weights(len(words)))
    vocab = np.array(words)[drawn]
    texts, start = [], 0
    for length in lengths:
        texts.append(" ".join(vocab[start : start + length]) + ".")
        start += length
    return texts


def write_store(path: Path, posts: int, words: list[str], rng: np.random.Generator) -> None:
    """A finished crawl's store, written in one transaction (the crawl is benchmarks/scrape.py's subject)."""
    threads = posts // POSTS_PER_THREAD
    titles = synthetic_texts(threads, words, rng, 4, 10)
    bodies = synthetic_texts(posts, words, rng, 20, 120)
    with ForumStore(path) as store, store.db:
        store.db.executemany(
            "INSERT INTO threads (id, url, title, list_position, pages_fetched, done) VALUES (?, ?, ?, ?, 1, 1)",
            [(t + 1, f"https://forum.test/t/{t + 1}", titles[t].rstrip("."), t) for t in range(threads)],
        )
        store.db.executemany(
            "INSERT INTO thread_pages (thread_id, number, url) VALUES (?, 1, ?)",
            [(t + 1, f"https://forum.test/t/{t + 1}") for t in range(threads)],
        )
        store.db.executemany(
            "INSERT INTO posts (thread_id, position, page, external_id, author, posted_at, text, quotes, links)"
            " VALUES (?, ?, 1, ?, ?, ?, ?, '[]', '[]')",
            [
                (
                    i // POSTS_PER_THREAD + 1,
                    i % POSTS_PER_THREAD,
                    f"p{i}",
                    f"user{i % 5000}",
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    bodies[i],
                )
                for i in range(posts)
            ],
        )


def clustered_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around CLUSTERS random centres: neighbours exist, as among real post embeddings."""
    centres = rng.standard_normal((CLUSTERS, DIMENSIONS)).astype(np.float32)
    vectors = np.empty((count, DIMENSIONS), dtype=np.float32)
    for start in range(0, count, 100_000):
        stop = min(count, start + 100_000)
        chunk = centres[rng.integers(0, CLUSTERS, stop - start)] + 0.6 * rng.standard_normal(
            (stop - start, DIMENSIONS)
        ).astype(np.float32)
        vectors[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return vectors


# ------------------------------------------------------------------------------------------ measurements
def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
    }


def timed_queries(search, questions: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for question in questions[:10]:  # warm the page cache and the model
        search(question)
    seconds = []
    for question in questions:
        started = time.perf_counter()
        search(question)
        seconds.append(time.perf_counter() - started)
    return percentiles(seconds)


def build_index(posts: int, work: Path, rng: np.random.Generator, words: list[str]) -> tuple[RunLayout, dict]:
    """The synthetic forum's store and index under `work`, built once: a kept directory (--keep) that
    already holds them is reused, with the build figures of the run that made it (build.json)."""
    config = Config.model_validate(
        {
            "name": f"bench-{posts}",
            "runs_dir": str(work),
            "scrape": {"url": "x"},
            "index": {"embedding_model": None},
        }
    )
    layout = RunLayout.of(config)
    built = layout.root / "build.json"
    if built.exists():
        synthetic_texts(posts // POSTS_PER_THREAD, words, rng, 4, 10)  # the same draws as a fresh build:
        synthetic_texts(posts, words, rng, 20, 120)  # the questions after them are the same questions
        return layout, json.loads(built.read_text())
    layout.root.mkdir(parents=True, exist_ok=True)
    write_store(layout.forum_store, posts, words, rng)
    started = time.perf_counter()
    summary = run_index(config, layout.root, Console(quiet=True))
    figures = {
        "posts": posts,
        "passages": summary["passages"],
        "bm25_build_s": round(time.perf_counter() - started, 1),
        "index_mib": round(layout.search_index.stat().st_size / 2**20, 1),
        "build_load_average": [round(x, 2) for x in os.getloadavg()],
    }
    built.write_text(json.dumps(figures) + "\n")
    return layout, figures


def measure_index(
    posts: int,
    questions_count: int,
    embedder: SentenceEmbedder | None,
    work: Path,
    borrowed_vectors: Path | None = None,
) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    words = vocabulary(rng)
    layout, figures = build_index(posts, work, rng, words)
    result: dict[str, Any] = dict(figures)
    questions = [
        " ".join(q.split()[:8]).rstrip(".") + "?" for q in synthetic_texts(questions_count, words, rng, 6, 14)
    ]
    retriever = Retriever.open(layout.search_index, layout.vector_index)
    result["bm25_load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["bm25"] = timed_queries(lambda q: retriever.search(q, 5, mode="bm25"), questions)
    # what a hybrid search asks of BM25: its 50 best, before fusion
    result["bm25_candidates"] = timed_queries(lambda q: retriever.index.bm25(q, CANDIDATES), questions)
    with SearchIndex(layout.search_index) as index:
        matched = [len(index.bm25(q, 10**7)) for q in questions[:20]]
    result["bm25_matching_share"] = round(statistics.median(matched) / figures["passages"], 3)
    if embedder is not None and borrowed_vectors is not None:
        # the vector graph of a smaller forum (its passage ids are this one's first ids): the BM25 side,
        # the question's embedding and fusion at this size, the vector search at the smaller one
        result["hybrid_vectors_of"] = str(borrowed_vectors)
        hybrid = Retriever(retriever.index, VectorIndex.open_existing(borrowed_vectors), embedder)
        result["hybrid_load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["hybrid"] = timed_queries(lambda q: hybrid.search(q, 5, mode="hybrid"), questions)
        result["query_embedding"] = timed_queries(lambda q: embedder.embed([q]), questions)
    elif embedder is not None:
        vectors_built = layout.root / "vectors.json"
        if vectors_built.exists():
            result.update(json.loads(vectors_built.read_text()))
        else:
            vectors = VectorIndex(layout.vector_index, DIMENSIONS)
            started = time.perf_counter()
            ids = retriever.index.ids()
            vectors.add(ids, clustered_vectors(len(ids), rng))
            vectors.save()
            built = {
                "vectors_build_s": round(time.perf_counter() - started, 1),
                "vectors_mib": round(layout.vector_index.stat().st_size / 2**20, 1),
                "vectors_build_load_average": [round(x, 2) for x in os.getloadavg()],
            }
            vectors_built.write_text(json.dumps(built) + "\n")
            result.update(built)
        hybrid = Retriever(retriever.index, VectorIndex.open_existing(layout.vector_index), embedder)
        result["hybrid_load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["hybrid"] = timed_queries(lambda q: hybrid.search(q, 5, mode="hybrid"), questions)
        result["query_embedding"] = timed_queries(lambda q: embedder.embed([q]), questions)
    retriever.close()
    return result


def embedding_throughput(embedder: SentenceEmbedder) -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    texts = synthetic_texts(256, vocabulary(rng), rng, 20, 120)
    embedder.embed(texts[:64], batch_size=64)
    started = time.perf_counter()
    embedder.embed(texts, batch_size=64)
    seconds = time.perf_counter() - started
    return {"passages_per_s": round(len(texts) / seconds, 1)}


# ------------------------------------------------------------------------------------------ vector stores
def recall(found: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e.tolist())) / len(e) for f, e in zip(found, exact)]))


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    return np.argsort(-scores, axis=1)[:, :k]


def store_usearch(vectors: np.ndarray, queries: np.ndarray, k: int, path: Path) -> tuple[float, int, list]:
    from usearch.index import Index

    started = time.perf_counter()
    index = Index(
        ndim=DIMENSIONS,
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_search=EXPANSION_SEARCH,
    )
    index.add(np.arange(len(vectors), dtype=np.uint64), vectors)
    index.save(str(path))
    build = time.perf_counter() - started
    searches = [lambda q=q: [int(x) for x in index.search(q, k, threads=1).keys] for q in queries]
    return build, path.stat().st_size, searches


def store_faiss(vectors: np.ndarray, queries: np.ndarray, k: int, path: Path) -> tuple[float, int, list]:
    import faiss

    faiss.omp_set_num_threads(1)  # searched one query at a time, as usearch is
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(DIMENSIONS, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = EXPANSION_SEARCH
    index.add(vectors)
    faiss.write_index(index, str(path))
    build = time.perf_counter() - started
    searches = [lambda q=q: index.search(q[None, :], k)[1][0].tolist() for q in queries]
    return build, path.stat().st_size, searches


def store_exact_scan(vectors: np.ndarray, queries: np.ndarray, k: int, path: Path) -> tuple[float, int, list]:
    """What an exact-scan store (sqlite-vec's vec0) does per query: every vector scored, the k best kept.
    sqlite-vec itself cannot load here (this Python's sqlite3 has no enable_load_extension)."""
    started = time.perf_counter()
    np.save(path, vectors)
    build = time.perf_counter() - started
    searches = [lambda q=q: np.argpartition(-(vectors @ q), k)[:k].tolist() for q in queries]
    return build, Path(f"{path}.npy").stat().st_size, searches


def compare_stores(count: int, work: Path, k: int = 10, queries_count: int = 100) -> dict[str, Any]:
    rng = np.random.default_rng(SEED + 1)
    vectors = clustered_vectors(count, rng)
    picks = rng.integers(0, count, queries_count)
    noisy = vectors[picks] + 0.3 * rng.standard_normal((queries_count, DIMENSIONS)).astype(np.float32)
    queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    exact = exact_neighbours(vectors, queries, k)
    results: dict[str, Any] = {"vectors": count}
    for name, store in (
        ("usearch_hnsw", store_usearch),
        ("faiss_hnsw", store_faiss),
        ("exact_scan", store_exact_scan),
    ):
        build, size, searches = store(vectors, queries, k, work / f"{name}-{count}")
        found = [search() for search in searches[:3]] and [search() for search in searches]
        seconds = []
        for search in searches:
            started = time.perf_counter()
            search()
            seconds.append(time.perf_counter() - started)
        results[name] = {
            "build_s": round(build, 1),
            "mib": round(size / 2**20, 1),
            **percentiles(seconds),
            "recall_at_10": round(recall(found, exact), 3),
        }
        print(
            f"  {count:>9,} vectors  {name:<17} build {build:7.1f} s  {size / 2**20:8.1f} MiB  "
            f"p50 {results[name]['p50_ms']:8.2f} ms  p95 {results[name]['p95_ms']:8.2f} ms  "
            f"recall@10 {results[name]['recall_at_10']:.3f}",
            flush=True,
        )
    return results


# ------------------------------------------------------------------------------------------ main
def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"sqlite": sqlite3.sqlite_version}
    for name in ("usearch", "faiss-cpu", "sqlite-vec", "numpy", "torch", "transformers", "onnxruntime"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            None,
        ),
        "nice": os.nice(0),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--embedding-model",
        type=Path,
        default=None,
        help="a sentence-embedding model dir; default: the embeddings extra's, if installed",
    )
    parser.add_argument("--compare-stores", type=int, nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--vectors-of",
        type=int,
        default=None,
        help="past --hybrid-max, search the kept vector graph of the forum of this many posts instead "
        "(with --keep; a 1M-vector graph takes hours to build on two cores)",
    )
    parser.add_argument(
        "--no-passage-embedding",
        action="store_true",
        help="leave out the passage-embedding throughput (a minute on two busy cores)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="build the stores and indexes in this directory and reuse them on later runs "
        "(a 1M index takes minutes to build); default: a temporary directory",
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--embedding-backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="what runs the embedding model: auto (onnxruntime when installed, as a search does) or one",
    )
    parser.add_argument(
        "--hybrid-max",
        type=int,
        default=None,
        help="measure dense vectors and hybrid search only up to this many posts",
    )
    args = parser.parse_args()
    # One thread: a 15-token question gains nothing from two, and on a shared machine the second thread's
    # waits cost ten times the work (measured: 79 ms vs 719 ms p50 per question at load average 6).
    torch.set_num_threads(args.torch_threads)
    model_dir = args.embedding_model or bundled_model_dir()
    embedder = (
        SentenceEmbedder(model_dir, torch.device("cpu"), backend=args.embedding_backend)
        if model_dir
        else None
    )
    report: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "embedding_model": str(model_dir) if model_dir else None,
        "embedding_backend": embedder.backend if embedder else None,
        "sizes": [],
        "stores": [],
    }
    if embedder is not None and not args.no_passage_embedding:
        report["passage_embedding"] = embedding_throughput(embedder)
        print(f"embedding passages: {report['passage_embedding']['passages_per_s']} per second", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as scratch:
        work = args.keep or Path(scratch)
        for posts in args.posts:
            if args.hybrid_max is None or posts <= args.hybrid_max:
                result = measure_index(posts, args.queries, embedder, work)
            elif args.vectors_of is not None:
                graph = RunLayout(work / f"bench-{args.vectors_of}").vector_index
                result = measure_index(posts, args.queries, embedder, work, borrowed_vectors=graph)
            else:
                result = measure_index(posts, args.queries, None, work)
            report["sizes"].append(result)
            hybrid = result.get("hybrid", {})
            print(
                f"{posts:>9,} posts  BM25 build {result['bm25_build_s']:7.1f} s  {result['index_mib']:7.1f} MiB  "
                f"BM25 p50 {result['bm25']['p50_ms']:7.2f} p95 {result['bm25']['p95_ms']:7.2f} ms  "
                f"hybrid p50 {hybrid.get('p50_ms', float('nan')):7.2f} p95 {hybrid.get('p95_ms', float('nan')):7.2f} ms",
                flush=True,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        for count in args.compare_stores:
            report["stores"].append(compare_stores(count, Path(work)))
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
