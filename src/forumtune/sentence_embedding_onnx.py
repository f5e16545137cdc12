"""The sentence-embedding model run by onnxruntime: the same vectors as torch, in half the time on a CPU.

Embedding one question with torch costs ~15 ms on one core, nearly all of it in eager-mode dispatch of a
small model's many small ops; onnxruntime runs the same graph fused in ~7 ms (benchmarks/RESULTS.md,
"Retrieval"). That is most of a hybrid search's time, so the search index uses it when it can.

The graph is exported once from the torch model (mean pooling and unit length included, so the two paths
cannot differ in more than rounding) and cached under the user cache dir, keyed by the weights it came
from. Exporting needs the `onnx` package, running it `onnxruntime`; without either the caller keeps torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from forumtune.atomic import atomic_file
from forumtune.base_model import cache_dir

ONNX_OPSET = 17


def onnx_runtime_available() -> bool:
    """Whether both halves are installed: `onnx` to export the graph, `onnxruntime` to run it."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


class _PooledEncoder(torch.nn.Module):
    """The model plus the pooling SentenceEmbedder does, as one graph: token ids in, unit vectors out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1)


def cached_graph_path(model_dir: Path) -> Path:
    """Where the graph of these weights lives: a new file when the weights or torch's exporter change."""
    key = hashlib.sha256(str(model_dir.resolve()).encode())
    for weights in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        stat = weights.stat()
        key.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key.update(torch.__version__.encode())
    return cache_dir() / "embeddings-onnx" / f"{model_dir.name}-{key.hexdigest()[:16]}.onnx"


def export_graph(model: torch.nn.Module, target: Path) -> Path:
    """Write the pooled encoder's graph to `target` (atomically: a killed export leaves no half file)."""
    example = torch.ones(2, 8, dtype=torch.long)
    tokens = {0: "batch", 1: "tokens"}
    with atomic_file(target) as partial, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of shapes it takes as constants; they are not (the test feeds other shapes).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _PooledEncoder(model.eval()),
            (example, example),
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": tokens, "attention_mask": tokens, "embedding": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and BERT exports as is
        )
    return target


class OnnxSentenceEncoder:
    """Runs the exported graph; `threads` as torch's (one for a single question: see the benchmark)."""

    def __init__(self, graph: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    @classmethod
    def for_model(cls, model: torch.nn.Module, model_dir: Path) -> OnnxSentenceEncoder:
        graph = cached_graph_path(model_dir)
        if not graph.exists():
            export_graph(model, graph)
        return cls(graph, torch.get_num_threads())

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return self.session.run(["embedding"], feeds)[0]
