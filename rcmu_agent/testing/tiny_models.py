"""Tiny, randomly initialised models of the real classes, saved like hub repositories.

No model hub is reachable in CI, so tests and benchmarks build these, `save_pretrained` them to a
directory and load them through exactly the code path a real model id takes. They are useful to
users writing their own tests for the same reason.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["QWEN2VL_SPECIAL_TOKENS", "TINY_CHAT_TEMPLATE", "build_tiny_lora_adapter", "build_tiny_qwen2vl"]

QWEN2VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Our own Jinja rendering of Qwen2-VL's chat layout (default system turn, image before text).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The information of the person located at in the image: is a 41-year-old marketing executive.",
    "Answer the following question based on the information above and the given image, "
    "and provide citations for your response.",
    "Who is on the left? What does the dog that enjoys watching birds look like? Describe the image.",
    "Barack Obama Joe Biden Kit Harington Rose Leslie Alex Lacamoire Bella Sam cat dog cup rocket",
    "Cannot be answered. The information does not say. (0,1),(2,3) 0123456789 [1] [2] [3].",
]


def build_tiny_qwen2vl(path: str | Path, *, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """A 2-layer, 64-wide Qwen2VLForConditionalGeneration with a byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=QWEN2VL_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN2VL_SPECIAL_TOKENS[1:],
        chat_template=TINY_CHAT_TEMPLATE,
    )

    def token_id(token: str) -> int:
        found = bpe.token_to_id(token)
        assert found is not None, token
        return found

    heads = max(hidden // 16, 2)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": bpe.get_vocab_size(),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(heads // 2, 1),
            "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_chans": 3,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = token_id("<|im_end|>")
    model.generation_config.pad_token_id = token_id("<|endoftext|>")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64).save_pretrained(out)
    return out


def build_tiny_lora_adapter(base: str | Path, path: str | Path, *, seed: int = 1, rank: int = 8) -> Path:
    """A LoRA adapter on the language model's attention with random (non-zero) B, so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration.from_pretrained(base)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank * 2,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(str(path))
    return Path(path)
