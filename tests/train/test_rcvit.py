"""RCVIT on a tiny Qwen2-VL: what `rcmu train` learns is what the agent answers, through its own graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rcmu_agent.assistant import Assistant
from rcmu_agent.cli import app
from rcmu_agent.jsonl import read_jsonl
from rcmu_agent.schema import Region
from rcmu_agent.settings import Settings
from rcmu_agent.train.records import InstructionRecord, record_prompt

runner = CliRunner()


def _pick_eight(path: Path) -> list[InstructionRecord]:
    """Two short records of each RCVQA kind from the generated data, all with distinct prompts."""
    records = [InstructionRecord.model_validate(row) for _, row in read_jsonl(path)]
    chosen: list[InstructionRecord] = []
    prompts: set[str] = set()
    for kind in ("V2C", "C2V", "UA-V2C", "UA-C2V"):
        for record in sorted((r for r in records if r.kind == kind), key=lambda r: (len(r.answer), r.id)):
            if record_prompt(record) not in prompts and sum(r.kind == kind for r in chosen) < 2:
                chosen.append(record)
                prompts.add(record_prompt(record))
    assert len(chosen) == 8
    return chosen


@pytest.fixture(scope="module")
def eight(built: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eight") / "eight.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in _pick_eight(built.out / "rcmu.jsonl")))
    return path


@pytest.fixture(scope="module")
def trained(tiny_model: Path, eight: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "rcvit"
    args = ["train", "--data", str(eight), "--model", str(tiny_model), "--output-dir", str(out), "--lr", "5e-3"]
    args += ["--global-batch", "4", "--per-device-batch", "2", "--max-steps", "150", "--eval-data", str(eight)]
    args += ["--log-every", "10", "--eval-every", "50", "--save-every", "50", "--seed", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 150 steps" in result.output
    return out


def _score(model: Path, adapter: Path | None, eight: Path, home: Path) -> int:
    settings = Settings(
        model=str(model), adapter=str(adapter) if adapter else None, home=home, object_detector="",
        image_embedding_model="", device="cpu",
    )  # fmt: skip
    assistant = Assistant(settings)
    right = 0
    for _, row in read_jsonl(eight):
        record = InstructionRecord.model_validate(row)
        regions = [Region(box=r.box, category=r.category, info=r.info) for r in record.regions]
        answer = assistant.ask(record.question, record.image, regions=regions)
        assert answer.prompt == record_prompt(record)  # trained on exactly what the graph sends
        right += answer.text == record.answer
    return right


@pytest.mark.integration
def test_trained_adapter_answers_through_the_agent(
    trained: Path, tiny_model: Path, eight: Path, tmp_path: Path
) -> None:
    assert (trained / "adapter" / "adapter_config.json").is_file()
    assert _score(tiny_model, trained / "adapter", eight, tmp_path / "home") >= 7
    assert _score(tiny_model, None, eight, tmp_path / "home") < 7
    rows = [row for _, row in read_jsonl(trained / "metrics.jsonl")]
    assert [r["step"] for r in rows if "loss" in r] == list(range(10, 151, 10))
    assert rows[-1]["eval_loss"] < 0.1 < rows[0]["loss"] and all(r["samples_per_s"] > 0 for r in rows if "loss" in r)


@pytest.mark.integration
def test_merged_weights_answer_the_same(trained: Path, eight: Path, tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    result = runner.invoke(app, ["merge", "--adapter", str(trained / "adapter"), "--out", str(merged)])
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (merged / name).is_file(), name
    assert not (merged / "adapter_config.json").exists()
    assert _score(merged, None, eight, tmp_path / "home") >= 7


@pytest.mark.integration
def test_prompt_and_image_tokens_carry_no_loss(tiny_model: Path, eight: Path) -> None:
    from rcmu_agent.backends.hf import IMAGE_PAD, TransformersVLM
    from rcmu_agent.train._batches import Encoder

    vlm = TransformersVLM(str(tiny_model), device="cpu")
    records = [InstructionRecord.model_validate(row) for _, row in read_jsonl(eight)]
    encoder = Encoder(vlm, records)
    image_pad = vlm.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    for i, record in enumerate(records):
        item = encoder(i)
        ids, labels = item["input_ids"][0], item["labels"][0]
        answer = (labels != -100).nonzero()[:, 0]
        start = int(answer[0])
        assert answer.tolist() == list(range(start, len(ids)))  # one block at the end: the answer
        assert (labels[:start] == -100).all() and (ids == image_pad).sum() > 0
        assert (labels[ids == image_pad] == -100).all()
        assert vlm.tokenizer.decode(ids[start:]) == record.answer + "<|im_end|>"
        assert (labels[start:] == ids[start:]).all()


@pytest.mark.integration
def test_only_language_model_lora_is_trainable(tiny_model: Path) -> None:
    from transformers import Qwen2VLForConditionalGeneration

    from rcmu_agent.train.rcvit import TrainConfig, _peft_model

    model = _peft_model(Qwen2VLForConditionalGeneration.from_pretrained(tiny_model), TrainConfig())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any("visual." in n for n in trainable)
    assert all("language_model" in n and "lora_" in n for n in trainable)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f".{proj}.lora_A" in n for n in trainable), proj


@pytest.mark.integration
def test_resume_reproduces_the_uninterrupted_run(tiny_model: Path, eight: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from rcmu_agent.train.rcvit import TrainConfig, train

    data = tmp_path / "data.jsonl"
    data.write_text(eight.read_text() + '{"id": "broken", "kind": "V2C"}\n')  # a bad line is skipped, not fatal

    def config(out: str, **extra: Any) -> TrainConfig:
        return TrainConfig(
            data=data, model=str(tiny_model), output_dir=tmp_path / out, lr=5e-3, global_batch=4, per_device_batch=2,
            max_steps=12, log_every=1, eval_every=4, save_every=4, eval_data=eight, seed=3, **extra,
        )  # fmt: skip

    straight = train(config("straight"))
    assert [(b.path, b.line) for b in straight.skipped_records] == [(data, 9)]
    stopped = train(config("resumed", stop_at_step=6))
    assert stopped.adapter is None and stopped.steps == 6
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    resumed = train(config("resumed", resume=True))
    assert resumed.steps == 12 and resumed.adapter is not None

    def curve(out: str) -> list[tuple[int, float, float | None]]:
        rows = [row for _, row in read_jsonl(tmp_path / out / "metrics.jsonl")]
        return [(r["step"], r["loss"], r.get("eval_loss")) for r in rows]

    a, b = curve("straight"), curve("resumed")
    assert [s for s, _, _ in a] == [s for s, _, _ in b] == list(range(1, 13))
    for (_, la, ea), (_, lb, eb) in zip(a, b, strict=True):
        assert la == pytest.approx(lb, rel=1e-5, abs=1e-6)
        assert (ea is None) == (eb is None) and (ea is None or ea == pytest.approx(eb, rel=1e-5))
    wa = load_file(str(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() < 1e-5 for k in wa)
    state = json.loads((tmp_path / "resumed" / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["step"] == 12 and state["epoch"] * 8 + state["index"] == 12 * 4


@pytest.mark.integration
def test_full_disk_during_a_save_keeps_the_last_checkpoint(
    tiny_model: Path, eight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from rcmu_agent.train import _checkpoint
    from rcmu_agent.train.rcvit import TrainConfig, train

    config = TrainConfig(
        data=eight, model=str(tiny_model), output_dir=tmp_path / "run", lr=5e-3, global_batch=4, per_device_batch=2,
        max_steps=8, save_every=4, eval_fraction=0,
    )  # fmt: skip
    real = _checkpoint.write_json

    def full_at_step_8(path: Path, data: Any) -> None:
        if isinstance(data, dict) and data.get("step") == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(_checkpoint, "write_json", full_at_step_8)
    with pytest.raises(_checkpoint.DiskFullError, match="checkpoint-4 is intact"):
        train(config)
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8.tmp"]
    monkeypatch.setattr(_checkpoint, "write_json", real)
    config.resume = True
    assert train(config).steps == 8
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-4",
        "checkpoint-8",
    ]


@pytest.mark.integration
def test_train_reports_a_file_without_usable_records(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text("not json\n")
    result = runner.invoke(app, ["train", "--data", str(data), "--model", str(tiny_model), "--output-dir", "x"])
    assert result.exit_code == 2 and "no usable records" in result.output


@pytest.mark.unit
def test_global_batch_must_split_evenly() -> None:
    from rcmu_agent.errors import InvalidInputError
    from rcmu_agent.train.rcvit import TrainConfig

    assert TrainConfig(global_batch=32, per_device_batch=4).grad_accum(2) == 4
    with pytest.raises(InvalidInputError, match="not a multiple"):
        TrainConfig(global_batch=32, per_device_batch=3).grad_accum(1)


@pytest.mark.integration
def test_runs_unchanged_under_torchrun(tiny_model: Path, eight: Path, tmp_path: Path) -> None:
    """Two processes (gloo on CPU) through `torchrun -m rcmu_agent.cli train`: the same command, many devices."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    args = ["--data", str(eight), "--model", str(tiny_model), "--output-dir", str(out), "--cpu"]
    args += ["--global-batch", "4", "--per-device-batch", "1", "--max-steps", "3", "--eval-every", "3"]
    args += ["--save-every", "3", "--log-every", "1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "rcmu_agent.cli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 3 steps") == 1  # rank 0 reports; rank 1 stays quiet
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]  # one writer, not one per process
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "checkpoint-3").is_dir()
