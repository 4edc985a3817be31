"""RC-Qwen2-VL in-process through transformers, with an optional peft LoRA adapter.

The tokenizer and the Qwen2-VL image processor are composed here rather than through
`Qwen2VLProcessor`, which insists on a video processor that needs torchvision. `encode` is the one
place that turns (image, text[, answer]) into model inputs, so training uses the very same chat
template, image-token expansion and pixel processing as answering.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rcmu_agent import timings
from rcmu_agent.backends.base import VisionLanguageModel
from rcmu_agent.cpu import DtypeChoice, choose_dtype
from rcmu_agent.errors import ModelLoadError, first_line
from rcmu_agent.hub import hub_kwargs
from rcmu_agent.visual_budget import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rcmu_agent.settings import Settings

__all__ = ["ATTENTION", "QWEN2VL_CHAT_FALLBACK", "TransformersVLM", "pick_dtype"]

log = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"
# Qwen2-VL's chat layout, used only when a tokenizer ships without a chat template.
QWEN2VL_CHAT_FALLBACK = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{image}{text}<|im_end|>\n<|im_start|>assistant\n"
)
VISION = "<|vision_start|>" + IMAGE_PAD + "<|vision_end|>"
# PyTorch's fused attention for the vision tower and the language model alike (transformers supports it
# for both halves of Qwen2-VL): no seq x seq score matrix is kept, which for a 12 MP photo's 4,920
# patches is 1.5 GB per vision block in fp32 under eager attention.
ATTENTION = "sdpa"
LOAD_FIX = (
    "point RCMU_MODEL (--model) at a local model directory, or serve the model with vLLM and set "
    "RCMU_BACKEND=openai RCMU_BASE_URL=..., or pass --context-only to stop before the model"
)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype `load` uses: `rcmu_agent.cpu.choose_dtype` (an explicit name as given; `auto` is
    bf16 where the GPU or CPU computes it natively, fp32 elsewhere)."""
    return choose_dtype(dtype, device).torch_dtype()


class TransformersVLM(VisionLanguageModel):
    """Qwen2VLForConditionalGeneration from a hub id or a directory; greedy decoding."""

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        processor: str | None = None,
        adapter: str | None = None,
        device: str = "auto",
        max_new_tokens: int = 128,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        dtype: str = "auto",
    ) -> None:
        """`min_pixels`/`max_pixels` replace the processor's own resize range (see `visual_budget`), so
        every image `encode` sees, for answering or for training, gets the same bounded token count."""
        self.model_id = model
        self.processor_id = processor or model
        self.adapter = adapter
        self.device = pick_device(device)
        self.max_new_tokens = max_new_tokens
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.dtype = dtype
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._image_processor: Any = None
        self.dtype_choice: DtypeChoice | None = None  # set by `load`: what `auto` became, and why

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersVLM:
        return cls(
            settings.model,
            processor=settings.processor_source(),
            adapter=settings.adapter,
            device=settings.device,
            max_new_tokens=settings.max_new_tokens,
            min_pixels=settings.min_pixels,
            max_pixels=settings.max_pixels,
            dtype=settings.dtype,
        )

    # ---- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        """Load tokenizer, image processor, model and adapter once; later calls return at once."""
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

            processor_fix = (
                "set RCMU_PROCESSOR to a local directory holding the tokenizer and "
                "preprocessor_config.json, or " + LOAD_FIX
            )
            try:
                hub = hub_kwargs(self.processor_id, what="the processor", fix=processor_fix)
                tokenizer = AutoTokenizer.from_pretrained(self.processor_id, **hub)
                image_processor = AutoImageProcessor.from_pretrained(self.processor_id, **hub)
            except ModelLoadError:
                raise
            except Exception as exc:  # hub/IO/config errors all mean the same thing to a user
                raise ModelLoadError(
                    f"cannot load the processor from {self.processor_id!r}: {first_line(exc)}", processor_fix
                ) from exc
            choice = choose_dtype(self.dtype, self.device)
            log.info(
                "loading %s on %s in %s (%s), %s attention", self.model_id, self.device, choice.name, choice.reason,
                ATTENTION,
            )  # fmt: skip
            try:
                hub = hub_kwargs(self.model_id, what="model", fix=LOAD_FIX)
                # `dtype` makes transformers cast each tensor as it is read from the checkpoint: a bf16
                # model never exists in fp32 on the way, so the peak is the chosen dtype's size.
                model: Any = Qwen2VLForConditionalGeneration.from_pretrained(
                    self.model_id, dtype=choice.torch_dtype(), attn_implementation=ATTENTION,
                    **self._placement(), **hub,
                )  # fmt: skip
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"cannot load model {self.model_id!r}: {first_line(exc)}", LOAD_FIX) from exc
            if self.adapter:
                model = self._with_adapter(model)
            self._model = model.to(self.device).eval()
            _time_vision(self._model)
            self._tokenizer, self._image_processor = tokenizer, image_processor
            self.dtype_choice = choice

    def _placement(self) -> dict[str, Any]:
        """Weights straight onto an accelerator, never staged in CPU memory first (one copy, not two).

        On the CPU transformers already builds the model empty and fills it from the memory-mapped
        checkpoint, so nothing is needed there.
        """
        if self.device == "cpu":
            return {}
        return {"device_map": {"": self.device}}

    def _with_adapter(self, model: Any) -> Any:
        from peft import PeftModel

        adapter = str(self.adapter)

        fix = "set RCMU_ADAPTER (--adapter) to a directory written by `rcmu train` or a hub id, or unset it"
        try:
            hub = hub_kwargs(adapter, what="LoRA adapter", fix=fix)
            peft_model = PeftModel.from_pretrained(model, adapter, **hub)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load LoRA adapter {self.adapter!r}: {first_line(exc)}", fix) from exc
        return peft_model.merge_and_unload()  # merged: inference costs the same as the base model

    @property
    def loaded(self) -> bool:
        """Whether `load` has run: a server reports the first, slow load as a step of its own."""
        return self._model is not None

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tokenizer

    # ---- inputs --------------------------------------------------------------------------------
    def render_chat(self, text: str, with_image: bool) -> str:
        """The user turn through the model's chat template, ending with the assistant prompt."""
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
            content.append({"type": "text", "text": text})
            rendered: str = tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
            return rendered
        return QWEN2VL_CHAT_FALLBACK.format(image=VISION if with_image else "", text=text)

    def encode(self, text: str, image: Image.Image | None, answer: str | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for one turn; with `answer`, also `labels` (-100 on everything but the answer).

        The image becomes `grid_t*grid_h*grid_w / merge_size**2` pad tokens, as Qwen2-VL expects.
        """
        import torch

        self.load()
        prompt = self.render_chat(text, image is not None)
        inputs: dict[str, torch.Tensor] = {}
        if image is not None:
            budget = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
            with timings.stage("resize_s"):
                vision = self._image_processor(images=[image], size=budget, return_tensors="pt")
            grid = vision["image_grid_thw"]
            merge = int(getattr(self._image_processor, "merge_size", 2))
            prompt = prompt.replace(IMAGE_PAD, IMAGE_PAD * (int(grid[0].prod()) // merge**2), 1)
            inputs = {"pixel_values": vision["pixel_values"], "image_grid_thw": grid}
        prompt_ids = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = list(prompt_ids)
        if answer is not None:
            answer_ids = self._tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
            ids += answer_ids
            labels = [-100] * len(prompt_ids) + list(answer_ids)
            inputs["labels"] = torch.tensor([labels])
        inputs["input_ids"] = torch.tensor([ids])
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        if image is not None:
            # Marks image tokens (1) among text (0), as Qwen2VLProcessor does; without it transformers
            # silently gives the image plain 1-D positions instead of Qwen2-VL's multimodal RoPE.
            pad_id = self._tokenizer.convert_tokens_to_ids(IMAGE_PAD)
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == pad_id).int()
        return inputs

    # ---- answering -----------------------------------------------------------------------------
    def _generation(self, text: str, image: Image.Image | None, max_new_tokens: int | None) -> dict[str, Any]:
        """`model.generate` arguments for one turn: greedy, as RC-Qwen2-VL was evaluated."""
        inputs = {k: v.to(self.device) for k, v in self.encode(text, image).items()}
        return {
            **inputs,
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "do_sample": False,
            "pad_token_id": self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
        }

    def generate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        import torch

        self.load()  # a first, slow load is not part of any answer's stages
        clock = _Clock()
        kwargs = self._generation(text, image, max_new_tokens)
        with torch.inference_mode():
            output = self.model.generate(**kwargs, streamer=clock)
        new_tokens = output[0, kwargs["input_ids"].shape[1] :]
        reply: str = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        return reply.strip()

    def stream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """Decoded text as `generate` produces it, token by token (`_token_streamer`).

        Generation runs in its own thread and hands text over a queue; an error there ends the
        stream and is raised here, so a caller never waits on a queue nobody will fill.
        """
        import torch

        self.load()
        clock = _Clock()
        kwargs = self._generation(text, image, max_new_tokens)
        streamer = _token_streamer(self._tokenizer)
        clock.inner = streamer
        failed: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs, streamer=clock)
            except BaseException as exc:  # re-raised in the consumer's thread below
                failed.append(exc)
                streamer.end()

        # the caller's context goes along, so the stage times land in the caller's `timings` scope
        worker = threading.Thread(target=contextvars.copy_context().run, args=(run,), name="rcmu-generate", daemon=True)
        worker.start()
        started = False
        for piece in streamer:
            if not started:  # `generate` strips the reply; so does the stream, at its start
                piece = piece.lstrip()
                started = bool(piece)
            if piece:
                yield piece
        worker.join()
        if failed:
            raise failed[0]
        if not started:  # an empty reply (the end token first) is still a reply, not a stream of nothing
            yield ""


class _Clock:
    """A `generate` streamer that timestamps what it is handed, passing it on to `inner` if any.

    `generate` hands over the prompt once before its first forward pass, then each new token; so
    prompt-to-first-token is the vision encoder plus the prefill (the vision part is measured apart
    by `_time_vision`), and the tokens after the first give the decoding rate.
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.called = time.perf_counter()
        self.started: float | None = None
        self.first: float | None = None
        self.tokens = 0

    def put(self, value: Any) -> None:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        else:
            self.first = self.first or now
            self.tokens += int(value.numel())
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        now = time.perf_counter()
        scope = timings.current()
        if scope is not None and self.started is not None and self.first is not None:
            # transformers may run the vision encoder before handing over the prompt, or inside the
            # first forward pass: only in the second case is it part of prompt-to-first-token
            inside = scope.marks.get("vision_end", 0.0) > self.started
            vision = scope.get("vision_s", 0.0) if inside else 0.0
            timings.add("prefill_s", max(0.0, self.first - self.started - vision))
            timings.add("first_token_s", self.first - self.called)
            timings.note("decode_tokens", self.tokens - 1)
            if self.tokens > 1 and now > self.first:
                timings.note("tokens_per_s", (self.tokens - 1) / (now - self.first))
        if self.inner is not None:
            self.inner.end()


def _time_vision(model: Any) -> None:
    """Time every call of the vision encoder into the caller's `timings` scope (`vision_s`)."""
    visual = getattr(getattr(model, "model", None), "visual", None)
    if visual is None:
        return
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(*_: Any) -> None:
        if started:
            timings.add("vision_s", time.perf_counter() - started.pop())
            timings.mark("vision_end")

    visual.register_forward_pre_hook(before)
    visual.register_forward_hook(after)


def _token_streamer(tokenizer: Any) -> Any:
    """transformers' `TextIteratorStreamer`, but handing text over per token rather than per word.

    The stock streamer waits for a space before releasing text, so a reply in a script without
    spaces (or a long number) would arrive in one piece. This one releases whatever decodes to whole
    characters, holding back only half a multi-byte character (decoded as U+FFFD) until it completes.
    """
    from transformers import TextIteratorStreamer

    class TokenStreamer(TextIteratorStreamer):
        def put(self, value: Any) -> None:
            if len(value.shape) > 1:
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.tolist())
            text = str(self.tokenizer.decode(self.token_cache, **self.decode_kwargs))
            if text.endswith("\ufffd"):
                return
            printable, self.print_len = text[self.print_len :], len(text)
            if printable:
                self.on_finalized_text(printable)

    return TokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
