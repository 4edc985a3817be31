"""Tiny, randomly initialised vision models of the real classes, saved like hub repositories.

Tests and benchmarks cannot download anything, yet they must exercise the very loading code a real
hub id goes through (`AutoConfig` → model class, tokenizer, image processor). So these builders make
the same classes with toy sizes (a few hundred kB each) and `save_pretrained` every piece a hub repo
holds; `from_pretrained(directory)` then works exactly as it would for `google/owlv2-...`.

The weights are random: outputs have the right shapes and types, never meaningful content.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

__all__ = ["TINY_WORDS", "build_tiny_clip", "build_tiny_grounding_dino", "build_tiny_owlv2"]

# Words tests query with; the tokenizers are built so each is one token (or a few, never <unk>).
TINY_WORDS = (
    "a",
    "an",
    "photo",
    "of",
    "the",
    "cat",
    "dog",
    "cup",
    "coffee",
    "person",
    "rocket",
    "astronaut",
    "mug",
    "bag",
    "car",
    "bike",
    "plant",
    "toy",
    "ball",
    "man",
    "woman",
    "child",
)

_SEED = 0


def _clip_style_tokenizer() -> Any:
    """A byte-level BPE `CLIPTokenizer` whose end-of-text token has the highest id.

    OWLv2's text tower pools at `input_ids.argmax()`, as the real CLIP vocabulary puts
    `<|endoftext|>` last; the tiny vocabulary must keep that property or pooling reads a word.
    """
    from transformers import CLIPTokenizer

    corpus = [" ".join(TINY_WORDS)] * 50 + [f"a photo of a {w}." for w in TINY_WORDS] * 20
    corpus += list(string.printable.strip())  # every ASCII character gets a token: no <unk> on odd input
    trained = CLIPTokenizer().train_new_from_iterator(corpus, vocab_size=400)
    model = json.loads(trained.backend_tokenizer.to_str())["model"]
    specials = ["<|startoftext|>", "<|endoftext|>"]
    ordinary = sorted((t for t in model["vocab"] if t not in specials), key=model["vocab"].__getitem__)
    vocab = {token: i for i, token in enumerate([*ordinary, *specials])}
    # `tokenizers` wants (left, right) pairs here, whatever the annotation says
    merges: Any = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _save_processor_config(path: Path, processor_class: str) -> None:
    """Name the combined processor class in preprocessor_config.json, as the real hub repos do."""
    config_file = path / "preprocessor_config.json"
    data = json.loads(config_file.read_text())
    data.setdefault("processor_class", processor_class)
    config_file.write_text(json.dumps(data, indent=2))


def build_tiny_clip(path: str | Path) -> Path:
    """Save a tiny `CLIPModel` (64 px images, width 32, 2 layers, projection 16) with its processors."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    path = Path(path)
    torch.manual_seed(_SEED)
    tokenizer = _clip_style_tokenizer()
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            **ids,
        },
        vision_config={
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(path)
    _save_processor_config(path, "CLIPProcessor")
    return path


def _calm_heads(model: Any, names: tuple[str, ...]) -> None:
    """Re-initialise the detection heads' linear layers with small weights.

    OWLv2 leaves its head MLPs at PyTorch's default init, which at width 32 saturates the sigmoid:
    every box collapses to a zero-height line and every score to 0 or 1. Small weights give what a
    trained model's boxes look like (each patch proposes a box around itself) and scores near 0.5,
    so tests see real, varied detections while the classes and the loading path stay the real ones.
    """
    import torch

    with torch.no_grad():
        for name in names:
            for layer in getattr(model, name).modules():
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_(0.0, 0.02)
                    if layer.bias is not None:
                        layer.bias.zero_()


def build_tiny_owlv2(path: str | Path) -> Path:
    """Save a tiny `Owlv2ForObjectDetection` (64 px square input, 16 px patches → 16 boxes)."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil

    path = Path(path)
    torch.manual_seed(_SEED)
    tokenizer = _clip_style_tokenizer()
    tokenizer.model_max_length = 16  # OWL text queries are 16 tokens, padded to max_length
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = Owlv2Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            **ids,
        },
        vision_config={
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=32,  # the class head maps image features to text width
    )
    model = Owlv2ForObjectDetection(config).eval()
    _calm_heads(model, ("box_head", "class_head", "objectness_head"))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    Owlv2ImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(path)
    _save_processor_config(path, "Owlv2Processor")
    return path


def _bert_tokenizer() -> Any:
    """A WordPiece `BertTokenizer` laid out like bert-base-uncased where Grounding DINO looks.

    The model hard-codes the ids of [CLS]=101, [SEP]=102, "."=1012 and "?"=1029 to split the prompt
    into phrases, so those ids are kept and the rest of the first 1030 slots are `[unusedN]` fillers.
    """
    from transformers import BertTokenizer

    fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    tokens = [fixed.get(i, f"[unused{i}]") for i in range(1030)]
    tokens += [w for w in (*TINY_WORDS, ",", "!") if w not in tokens]
    tokens += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + [
        f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"
    ]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=256)


def build_tiny_grounding_dino(path: str | Path) -> Path:
    """Save a tiny `GroundingDinoForObjectDetection` (tiny Swin backbone, 1+2 layers, 30 queries).

    Two decoder layers, not one: the box heads of layers 1.. are tied to layer 0's, and the tie
    declaration fails to resolve with a single layer.
    """
    import torch
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
    )

    path = Path(path)
    torch.manual_seed(_SEED)
    tokenizer = _bert_tokenizer()
    config = GroundingDinoConfig(
        backbone_config={
            "model_type": "swin",
            "image_size": 64,
            "patch_size": 4,
            "embed_dim": 8,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 4,
            "out_features": ["stage2", "stage3", "stage4"],
        },
        text_config={
            "model_type": "bert",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 256,
        },
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_n_points=2,
        decoder_n_points=2,
        num_feature_levels=3,
        num_queries=30,
        max_text_len=256,
    )
    GroundingDinoForObjectDetection(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(path)
    _save_processor_config(path, "GroundingDinoProcessor")
    return path
