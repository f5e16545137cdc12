#!/usr/bin/env python
"""Load test of `forumtune serve` on loopback: N concurrent streaming clients against one server.

Starts the OpenAI-compatible server (forumtune.chat.server.create_app under uvicorn) on 127.0.0.1 with
one model, then N clients each send R streamed chat completions one after another, all N at once. The
server runs one generation at a time per model and queues the rest (its queue is sized to N, so no
request should be refused). Every request must end with a finish_reason, a usage chunk and [DONE];
anything else counts as dropped.

Per request it records time to first token (TTFT), total latency and completion tokens; overall it
reports wall time and tokens/s (all completion tokens / wall time).

Usage: python benchmarks/serve_load.py [--clients 16] [--requests 2] [--max-tokens 64]
       [--model builtin:tiny-llama] [--device cpu] [--threads N] [--out benchmarks/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

QUESTIONS = [
    "Which skis for deep powder?",
    "Is a 100 mm waist too wide for the resort?",
    "How often should I wax my skis?",
    "What DIN setting for an intermediate skier?",
]


def load_engine(model: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    from forumtune.base_model import load_tokenizer, resolve_base_model
    from forumtune.chat.transformers_engine import TransformersEngine

    tokenizer = load_tokenizer(model)
    weights = AutoModelForCausalLM.from_pretrained(resolve_base_model(model), dtype=torch.float32).to(device)
    return TransformersEngine(weights, tokenizer)


def start_server(engine, clients: int, max_tokens: int):
    import uvicorn

    from forumtune.chat.engine import SamplingSettings
    from forumtune.chat.server import create_app

    app = create_app(
        {"bench": engine},
        max_queue=clients,
        max_tokens_limit=max_tokens,
        sampling=SamplingSettings(max_new_tokens=max_tokens),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def one_request(http, question: str, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first_token = finish_reason = usage = None
    done = False
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        status = response.status_code
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                if choice["delta"].get("content") and first_token is None:
                    first_token = time.perf_counter()
                finish_reason = choice.get("finish_reason") or finish_reason
    ended = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else 0
    return {
        "status": status,
        "ok": status == 200 and done and finish_reason is not None and usage is not None,
        "ttft_s": None if first_token is None else first_token - started,
        "latency_s": ended - started,
        "completion_tokens": tokens,
    }


async def client(http, index: int, requests: int, max_tokens: int) -> list[dict[str, Any]]:
    return [
        await one_request(http, QUESTIONS[(index + n) % len(QUESTIONS)], max_tokens) for n in range(requests)
    ]


async def run_load(
    url: str, clients: int, requests: int, max_tokens: int
) -> tuple[list[dict[str, Any]], float]:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        per_client = await asyncio.gather(*(client(http, n, requests, max_tokens) for n in range(clients)))
        wall = time.perf_counter() - started
    return [result for results in per_client for result in results], wall


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarize(results: list[dict[str, Any]], wall: float, clients: int) -> dict[str, Any]:
    ok = [r for r in results if r["ok"]]
    latencies = [r["latency_s"] for r in ok]
    ttfts = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    tokens = sum(r["completion_tokens"] for r in ok)
    streams = [
        r["completion_tokens"] / (r["latency_s"] - r["ttft_s"])
        for r in ok
        if r["ttft_s"] is not None and r["latency_s"] > r["ttft_s"]
    ]
    return {
        "clients": clients,
        "requests": len(results),
        "ok": len(ok),
        "dropped": len(results) - len(ok),
        "wall_s": wall,
        "completion_tokens": tokens,
        "tokens_per_s": tokens / wall,
        "ttft_p50_s": percentile(ttfts, 0.5) if ttfts else None,
        "ttft_p95_s": percentile(ttfts, 0.95) if ttfts else None,
        "latency_p50_s": percentile(latencies, 0.5) if latencies else None,
        "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
        "latency_max_s": max(latencies) if latencies else None,
        "stream_tokens_per_s_mean": statistics.mean(streams) if streams else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--requests", type=int, default=2, help="streamed requests per client, one after another"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", default="builtin:tiny-llama")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "serve_load.json"
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = load_engine(args.model, args.device)
    server, thread, url = start_server(engine, max(args.clients), args.max_tokens)
    try:
        asyncio.run(run_load(url, 1, 1, 8))  # warm-up, not measured
        runs = []
        for clients in args.clients:
            results, wall = asyncio.run(run_load(url, clients, args.requests, args.max_tokens))
            runs.append({**summarize(results, wall, clients), "results": results})
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    headers = [
        "clients",
        "requests",
        "ok",
        "dropped",
        "TTFT p50 s",
        "TTFT p95 s",
        "latency p50 s",
        "latency p95 s",
        "latency max s",
        "tokens",
        "wall s",
        "tokens/s",
        "per-stream tok/s",
    ]
    bc.print_table(
        headers,
        [
            [
                r["clients"],
                r["requests"],
                r["ok"],
                r["dropped"],
                bc.fmt(r["ttft_p50_s"], 3),
                bc.fmt(r["ttft_p95_s"], 3),
                bc.fmt(r["latency_p50_s"], 3),
                bc.fmt(r["latency_p95_s"], 3),
                bc.fmt(r["latency_max_s"], 3),
                r["completion_tokens"],
                bc.fmt(r["wall_s"], 2),
                bc.fmt(r["tokens_per_s"], 1),
                bc.fmt(r["stream_tokens_per_s_mean"], 1),
            ]
            for r in runs
        ],
    )
    settings = {
        "model": args.model,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "requests_per_client": args.requests,
        "max_tokens": args.max_tokens,
        "temperature": 0.7,
    }
    bc.write_json(args.out, {"settings": settings, "environment": bc.environment(), "runs": runs})
    print(f"wrote {args.out}")
    return 1 if any(r["dropped"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
