"""RCVIT: LoRA instruction tuning of Qwen2-VL on RCMU records (paper §III-C, SPEC §3).

A plain loop in the style of the peft examples, not HF Trainer, so every step is readable:
encode with the agent's own `TransformersVLM.encode` (loss on the answer + end-of-turn only), LoRA on
the language model's attention and MLP projections (vision tower frozen), AdamW, cosine schedule with
warmup, gradient accumulation up to the global batch. `accelerate` owns devices and processes, so
`accelerate launch` / `torchrun` run this unchanged on many GPUs.

Output: `output_dir/adapter` (peft: `adapter_config.json` + weights) for `RCMU_ADAPTER`, checkpoints
`output_dir/checkpoint-<step>` that `resume=True` continues exactly, and `output_dir/metrics.jsonl`.
"""

from __future__ import annotations

import errno
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rcmu_agent.errors import InvalidInputError
from rcmu_agent.jsonl import BadLine, JsonlWriter, read_jsonl, write_jsonl
from rcmu_agent.train import _checkpoint as ckpt
from rcmu_agent.train._batches import DataStream, Encoder
from rcmu_agent.train.records import InstructionRecord, iter_valid

__all__ = ["LORA_TARGETS", "TrainConfig", "TrainResult", "load_records", "train"]

log = logging.getLogger(__name__)

# The language model's attention + MLP projections; `visual.*` never matches, so the vision tower stays frozen.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults are the paper's (§V-A). Each field is a `rcmu train` flag."""

    data: Path = Path("rcmu.jsonl")
    model: str = "Qwen/Qwen2-VL-2B-Instruct"
    processor: str | None = None
    output_dir: Path = Path("runs/rcvit")
    eval_data: Path | None = None  # held-out records; else `eval_fraction` of `data` is held out
    eval_fraction: float = 0.02
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str = LORA_TARGETS
    lr: float = 5e-5
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    global_batch: int = 32  # = per_device_batch x grad_accum x world_size
    per_device_batch: int = 4
    max_steps: int = 20_000
    max_grad_norm: float = 1.0
    bf16: bool | None = None  # None: bf16 when the device supports it, else fp32
    eval_every: int = 500
    save_every: int = 1000
    log_every: int = 10
    keep_checkpoints: int = 2
    seed: int = 0
    resume: bool = False
    cpu: bool = False
    encode_cache: int = 4096
    # visual token budget; None: RCMU_MIN_PIXELS / RCMU_MAX_PIXELS, so training sees what answering will
    min_pixels: int | None = None
    max_pixels: int | None = None
    stop_at_step: int | None = None  # checkpoint and stop here (time-boxed jobs); `resume` continues

    def __post_init__(self) -> None:
        self.data, self.output_dir = Path(self.data), Path(self.output_dir)
        if self.min_pixels is None or self.max_pixels is None:
            from rcmu_agent.settings import Settings

            answering = Settings()
            self.min_pixels = answering.min_pixels if self.min_pixels is None else self.min_pixels
            self.max_pixels = answering.max_pixels if self.max_pixels is None else self.max_pixels
        if not 0 < self.min_pixels <= self.max_pixels:
            raise InvalidInputError(
                f"the pixel budget {self.min_pixels}..{self.max_pixels} is not a range", "fix --min-pixels/--max-pixels"
            )
        self.eval_data = Path(self.eval_data) if self.eval_data else None
        counts = ("lora_r", "global_batch", "per_device_batch", "max_steps", "eval_every", "save_every", "log_every")
        for name in counts:
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}", f"fix --{name}")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.eval_fraction < 1 or self.lr <= 0:
            raise InvalidInputError("lr must be > 0, warmup_ratio and eval_fraction in [0, 1)", "fix the flags")

    def grad_accum(self, world_size: int) -> int:
        per_step = self.per_device_batch * world_size
        if self.global_batch % per_step:
            raise InvalidInputError(
                f"global batch {self.global_batch} is not a multiple of per-device batch {self.per_device_batch}"
                f" x {world_size} process(es)",
                "choose --global-batch = per-device batch x gradient accumulation x number of processes",
            )
        return self.global_batch // per_step


@dataclass
class TrainResult:
    adapter: Path | None  # None when the run stopped early (`stop_at_step`)
    steps: int
    loss: float
    eval_loss: float | None
    samples_per_second: float
    skipped_records: list[BadLine] = field(default_factory=list)


def load_records(path: Path, bad: list[BadLine]) -> list[InstructionRecord]:
    """The usable records of an instruction file; unusable lines are reported in `bad`, not fatal."""
    records = list(iter_valid(Path(path), bad))
    if not records:
        raise InvalidInputError(f"{path} has no usable records ({len(bad)} bad)", "check it with `rcmu data validate`")
    return records


def _mixed_precision(config: TrainConfig) -> str:
    import torch

    supported = not config.cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.bf16 and not supported:
        raise InvalidInputError("bf16 was asked for but this device does not support it", "drop --bf16")
    return "bf16" if (supported if config.bf16 is None else config.bf16) else "no"


def _peft_model(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
    )
    peft_model = get_peft_model(model, lora)
    wrong = [n for n, p in peft_model.named_parameters() if p.requires_grad and ("visual." in n or "lora_" not in n)]
    if wrong:
        raise InvalidInputError(f"LoRA targets train more than the language model: {wrong[:3]}", "fix --target-modules")
    return peft_model


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; returns where the adapter went and what the run measured."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from rcmu_agent.backends.hf import TransformersVLM

    acc = Accelerator(mixed_precision=_mixed_precision(config), cpu=config.cpu)
    accum = config.grad_accum(acc.num_processes)
    out = config.output_dir
    set_seed(config.seed)

    bad: list[BadLine] = []
    records, eval_records = _train_and_eval_records(config, bad)
    vlm = TransformersVLM(
        config.model,
        processor=config.processor,
        device=str(acc.device),
        min_pixels=config.min_pixels or 0,
        max_pixels=config.max_pixels or 0,  # both set by __post_init__
    )
    model = _peft_model(vlm.model, config)
    start = ckpt.latest_checkpoint(out) if config.resume else None
    if start is not None:
        _load_adapter(model, start / "adapter")
    model.train()
    optimizer, scheduler = _optimizer_and_schedule(model, config)
    model, optimizer = acc.prepare(model, optimizer)
    stream, step = DataStream(len(records), config.seed), 0
    if start is not None:
        step = _resume(start, stream, optimizer, scheduler, acc, config)
    if acc.is_main_process:
        _prepare_output(out, step, config)
    acc.wait_for_everyone()

    encoder = Encoder(vlm, records, config.encode_cache)
    evaluator = Encoder(vlm, eval_records, config.encode_cache)
    per_process = config.per_device_batch * accum
    metrics = JsonlWriter(out / "metrics.jsonl") if acc.is_main_process else None
    bar = _progress_bar(config, step, acc)
    window = _Window(torch.zeros((), device=acc.device))
    loop_started, first_step, last_loss, eval_loss = time.perf_counter(), step, float("nan"), None
    while step < config.max_steps:
        mine = stream.take(config.global_batch)[acc.process_index * per_process :][:per_process]
        _optimise(model, optimizer, scheduler, encoder, mine, accum, window, acc, config)
        step, window.steps = step + 1, window.steps + 1
        bar.update(1)
        row: dict[str, Any] = {}
        if step % config.log_every == 0 or step == config.max_steps:
            row = window.flush(step, scheduler.get_last_lr()[0], stream.epoch, config.global_batch, acc)
            last_loss = row["loss"]
            bar.set_postfix(loss=f"{last_loss:.4f}")
        if evaluator.records and (step % config.eval_every == 0 or step == config.max_steps):
            eval_loss = _evaluate(model, evaluator, config.per_device_batch, acc)
            row = {"step": step, **row, "eval_loss": eval_loss}
        if row and metrics is not None:
            metrics.write(row)
        stopping = step == config.stop_at_step
        if step % config.save_every == 0 or step == config.max_steps or stopping:
            _save(out, step, stream, model, optimizer, scheduler, acc, config)
        if stopping:
            break
    loop_seconds = time.perf_counter() - loop_started
    bar.close()
    if metrics is not None:
        metrics.close()
    adapter = _save_adapter(out, model, acc) if step == config.max_steps else None
    acc.wait_for_everyone()
    rate = config.global_batch * (step - first_step) / loop_seconds if loop_seconds > 0 else 0.0
    return TrainResult(adapter, step, last_loss, eval_loss, rate, bad)


def _train_and_eval_records(
    config: TrainConfig, bad: list[BadLine]
) -> tuple[list[InstructionRecord], list[InstructionRecord]]:
    """The training records and the held-out ones (`eval_data`, else the first `eval_fraction`)."""
    records = load_records(config.data, bad)
    for line in bad:
        log.warning("skipping %s", line)
    if config.eval_data is not None:
        return records, load_records(config.eval_data, bad)
    held = int(len(records) * config.eval_fraction)
    return records[held:], records[:held]


def _load_adapter(model: Any, adapter: Path) -> None:
    """Put a checkpoint's LoRA weights into the freshly wrapped model (resuming)."""
    from peft import load_peft_weights, set_peft_model_state_dict

    set_peft_model_state_dict(model, load_peft_weights(str(adapter), device="cpu"))


def _optimizer_and_schedule(model: Any, config: TrainConfig) -> tuple[Any, Any]:
    """AdamW over the trainable (LoRA) parameters, and the learning-rate schedule with its warmup."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * config.max_steps),
        num_training_steps=config.max_steps,
    )
    return optimizer, scheduler


def _resume(start: Path, stream: DataStream, optimizer: Any, scheduler: Any, acc: Any, config: TrainConfig) -> int:
    """Restore the optimizer, schedule, RNG and data position saved in `start`; the step to go on from."""
    state = ckpt.load_state(start, acc.process_index, optimizer, scheduler)
    stream.epoch, stream.index = state["epoch"], state["index"]
    if state["global_batch"] != config.global_batch:
        raise InvalidInputError("resuming with another --global-batch would change the data order", "keep it")
    log.info("resumed from %s (step %d)", start, state["step"])
    return int(state["step"])


def _prepare_output(out: Path, step: int, config: TrainConfig) -> None:
    """The run directory, rid of a killed save's leftovers and of metrics past the step resumed from."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt.clean_temporaries(out)
    _trim_metrics(out / "metrics.jsonl", step)
    ckpt.write_json(out / "train_config.json", asdict(config))


def _progress_bar(config: TrainConfig, step: int, acc: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=config.max_steps, initial=step, desc="rcvit", unit="step", disable=not acc.is_main_process)


@dataclass
class _Window:
    """Loss and speed since the last logged step; the loss sums on the device (no host sync per step)."""

    loss: Any
    steps: int = 0
    start: float = field(default_factory=time.perf_counter)

    def flush(self, step: int, lr: float, epoch: int, global_batch: int, acc: Any) -> dict[str, Any]:
        """The metrics row for `step` (loss averaged over processes), then start a new window."""
        elapsed = time.perf_counter() - self.start
        loss = float(acc.reduce(self.loss, "mean")) / self.steps
        row: dict[str, Any] = {"step": step, "loss": loss, "lr": lr, "epoch": epoch}
        row["samples_per_s"] = global_batch * self.steps / elapsed if elapsed > 0 else None
        self.loss.zero_()
        self.steps, self.start = 0, time.perf_counter()
        return row


def _optimise(model: Any, optimizer: Any, scheduler: Any, encoder: Encoder, mine: list[int], accum: int,
              window: _Window, acc: Any, config: TrainConfig) -> None:  # fmt: skip
    """One optimizer step on this process's share of the global batch: gradients accumulate over
    `accum` micro-batches and are synchronised across processes only on the last."""
    for k in range(accum):
        batch = encoder.batch(mine[k * config.per_device_batch : (k + 1) * config.per_device_batch], acc.device)
        with acc.no_sync(model) if k < accum - 1 else nullcontext():
            loss = model(**batch).loss
            acc.backward(loss / accum)
        window.loss += loss.detach() / accum
    if config.max_grad_norm > 0:
        acc.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _save_adapter(out: Path, model: Any, acc: Any) -> Path:
    """The finished run's adapter at `out/adapter`, written whole or not at all (main process only)."""
    adapter = out / "adapter"
    if acc.is_main_process:
        tmp = out / "adapter.tmp"
        acc.unwrap_model(model).save_pretrained(str(tmp))
        ckpt.atomic_replace_dir(tmp, adapter)
    return adapter


def _evaluate(model: Any, evaluator: Encoder, batch_size: int, acc: Any) -> float:
    """Mean answer-token loss over the held-out records (each process takes every n-th batch)."""
    import torch

    model.eval()
    total = torch.zeros(2, device=acc.device)
    indices = list(range(len(evaluator)))
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    with torch.no_grad():
        for chunk in batches[acc.process_index :: acc.num_processes]:
            loss = model(**evaluator.batch(chunk, acc.device)).loss
            total += torch.stack([loss.float() * len(chunk), torch.tensor(float(len(chunk)), device=acc.device)])
    model.train()
    summed = acc.reduce(total, "sum")
    return float(summed[0] / summed[1])


def _save(out: Path, step: int, stream: DataStream, model: Any, optimizer: Any, scheduler: Any, acc: Any,
          config: TrainConfig) -> None:  # fmt: skip
    """Assemble `checkpoint-<step>.tmp`, then rename it into place (a kill mid-save loses nothing)."""
    tmp = out / f"checkpoint-{step}.tmp"
    try:
        _write_checkpoint(tmp, step, stream, model, optimizer, scheduler, acc, config)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            last = ckpt.latest_checkpoint(out)
            kept = f"{last.name} is intact" if last else "no checkpoint was complete yet"
            raise ckpt.disk_full(tmp, exc, kept) from exc
        raise


def _write_checkpoint(tmp: Path, step: int, stream: DataStream, model: Any, optimizer: Any, scheduler: Any, acc: Any,
                      config: TrainConfig) -> None:  # fmt: skip
    import torch

    out, final = tmp.parent, tmp.parent / f"checkpoint-{step}"
    if acc.is_main_process:
        ckpt.clean_temporaries(out)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    torch.save(ckpt.rng_state(), tmp / f"rng_state_{acc.process_index}.pt")
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(str(tmp / "adapter"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        state = {"step": step, **stream.position(), "global_batch": config.global_batch, "seed": config.seed}
        ckpt.write_json(tmp / "trainer_state.json", state)
    acc.wait_for_everyone()
    if acc.is_main_process:
        ckpt.atomic_replace_dir(tmp, final)
        ckpt.prune(out, config.keep_checkpoints)
    acc.wait_for_everyone()


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric rows a killed run wrote after its last checkpoint: the resumed run rewrites them."""
    if path.exists():
        write_jsonl(path, [row for _, row in read_jsonl(path) if int(row.get("step", 0)) <= step])
