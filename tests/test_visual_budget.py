"""The visual token budget: one rule (`visual_budget`) applied by the processor for answering and for
training, by the image an OpenAI-compatible server receives, and by the count the CLI reports."""

from __future__ import annotations

import base64
import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcmu_agent.backends.hf import TransformersVLM
from rcmu_agent.backends.openai_compat import OpenAICompatibleVLM
from rcmu_agent.errors import InvalidInputError
from rcmu_agent.images import load_image
from rcmu_agent.prompt import format_box
from rcmu_agent.settings import Settings
from rcmu_agent.testing import Reply, build_tiny_qwen2vl, serve
from rcmu_agent.visual_budget import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    budget_size,
    fit_to_budget,
    jpeg_data_url,
    visual_tokens,
)

SMALL = {"min_pixels": 16 * 28 * 28, "max_pixels": 96 * 28 * 28}  # keeps the tiny model's work small


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("budget") / "qwen")


def phone_photo(scene: Path) -> Image.Image:
    """two_people.jpg cropped to 4:3 and upscaled to 4032x3024, as a phone would shoot it."""
    img = load_image(scene)
    width = img.height * 4 // 3
    left = (img.width - width) // 2
    return img.crop((left, 0, left + width, img.height)).resize((4032, 3024), Image.Resampling.BICUBIC)


@pytest.mark.unit
def test_defaults_are_the_qwen2vl_card_range_and_env_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().min_pixels, Settings().max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)
    assert (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS) == (200_704, 1_003_520)
    monkeypatch.setenv("RCMU_MAX_PIXELS", str(512 * 28 * 28))
    monkeypatch.setenv("RCMU_MIN_PIXELS", str(64 * 28 * 28))
    assert (Settings().min_pixels, Settings().max_pixels) == (64 * 28 * 28, 512 * 28 * 28)
    with pytest.raises(ValueError, match=r"min_pixels .* is above max_pixels"):
        Settings(min_pixels=2000 * 28 * 28)


@pytest.mark.integration
def test_token_count_matches_qwen2vls_own_resize_rule() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    rng = random.Random(0)
    for _ in range(3000):
        w = rng.randint(1, 9000)
        h = rng.randint(max(1, w // 150), min(9000, w * 150))
        low, high = rng.choice([(3136, 12_845_056), (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS), (3136, 16 * 784)])
        rh, rw = smart_resize(h, w, min_pixels=low, max_pixels=high)
        assert budget_size(w, h, min_pixels=low, max_pixels=high) == (rw, rh)
        assert visual_tokens(w, h, min_pixels=low, max_pixels=high) == rw * rh // 784
    # the figures: a 12 MP photo costs 15,552 tokens unbounded, 1,230 within the budget
    assert visual_tokens(4032, 3024, min_pixels=3136, max_pixels=12_845_056) == 15_552
    assert visual_tokens(4032, 3024) == 1230 <= 1280
    assert visual_tokens(100, 80) >= 256  # small photos are scaled up to the floor
    with pytest.raises(InvalidInputError, match="more than 200:1"):
        visual_tokens(10_000, 20)


@pytest.mark.integration
def test_encode_applies_the_budget_identically_for_answering_and_training(tiny: Path, faces_dir: Path) -> None:
    photo = load_image(faces_dir / "scenes" / "two_people.jpg")  # 1126x661
    vlm = TransformersVLM(str(tiny), device="cpu", **SMALL)
    expected = visual_tokens(*photo.size, **SMALL)
    answering = vlm.encode("Who is on the left?", photo)
    training = vlm.encode("Who is on the left?", photo, answer="Alice [1].")
    for inputs in (answering, training):
        grid = inputs["image_grid_thw"][0].tolist()
        assert grid[0] == 1 and grid[1] * grid[2] // 4 == expected
        assert int((inputs["mm_token_type_ids"] == 1).sum()) == expected
    assert answering["pixel_values"].equal(training["pixel_values"])
    # the tiny processor's own range (4..64 tokens) is overridden, not combined
    assert expected > 64
    # what `rcmu train` builds: the same budget as the agent's settings, from the same environment
    from rcmu_agent.train.rcvit import TrainConfig

    config = TrainConfig(model=str(tiny))
    assert (config.min_pixels, config.max_pixels) == (Settings().min_pixels, Settings().max_pixels)
    default = TransformersVLM.from_settings(Settings(model=str(tiny), device="cpu"))
    assert (default.min_pixels, default.max_pixels) == (config.min_pixels, config.max_pixels)


@pytest.mark.integration
def test_budget_bounds_a_phone_photo_in_the_processor(tiny: Path, shared_data: Path) -> None:
    photo = phone_photo(shared_data / "faces" / "scenes" / "two_people.jpg")
    vlm = TransformersVLM(str(tiny), device="cpu", max_pixels=128 * 28 * 28, min_pixels=4 * 28 * 28)
    inputs = vlm.encode("Describe the image.", photo)
    pads = int((inputs["mm_token_type_ids"] == 1).sum())
    assert pads == visual_tokens(4032, 3024, min_pixels=4 * 28 * 28, max_pixels=128 * 28 * 28) <= 128


@pytest.mark.integration
def test_openai_backend_sends_a_budget_sized_jpeg_and_leaves_boxes_alone(shared_data: Path) -> None:
    photo = phone_photo(shared_data / "faces" / "scenes" / "two_people.jpg")
    box = (1200.0, 300.0, 2000.0, 1400.0)  # pixels of the 4032x3024 original
    grid = format_box(box, photo.size)
    text = f"[1]: The information of the person located at {grid} in the image: Alice.\nWho is this?"
    with serve() as server:
        server.then(Reply(text="Alice [1]."))
        vlm = OpenAICompatibleVLM(model="m", base_url=server.url, api_key="k", timeout=5.0)
        assert vlm.generate(text, photo) == "Alice [1]."
        body = server.requests[0].body
    content = body["messages"][0]["content"]
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as sent:
        assert sent.format == "JPEG"
        assert sent.size == budget_size(4032, 3024)
        assert sent.width * sent.height <= DEFAULT_MAX_PIXELS
        assert visual_tokens(*sent.size) == visual_tokens(4032, 3024)  # the server's resize is a no-op
    assert len(data) < 1_000_000  # against 12.8 MB of PNG
    assert content[1]["text"] == text  # boxes in original-image coordinates, untouched
    assert re.search(r"\(\d+,\d+\),\(\d+,\d+\)", content[1]["text"])


@pytest.mark.unit
def test_fit_to_budget_and_jpeg_quality(small_photos: Path) -> None:
    photo = load_image(small_photos / "two_people.jpg")
    fitted = fit_to_budget(photo)
    assert fitted.size == budget_size(*photo.size)
    assert fit_to_budget(fitted) is fitted  # already at budget size: no second resize
    url = jpeg_data_url(fitted)
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as back:
        sent = np.asarray(back.convert("RGB"), dtype=np.float32)
    assert (
        float(np.abs(sent - np.asarray(fitted, dtype=np.float32)).mean()) < 3
    )  # quality 92: close to the pixels it was given


@pytest.mark.integration
def test_cli_context_only_reports_the_visual_tokens(tmp_path: Path, faces_dir: Path) -> None:
    from typer.testing import CliRunner

    from rcmu_agent.cli import app

    scene = faces_dir / "scenes" / "two_people.jpg"  # 1126x661
    env = {"RCMU_HOME": str(tmp_path), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
    runner = CliRunner()
    as_json = runner.invoke(app, ["ask", str(scene), "Who?", "--context-only", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["visual_tokens"] == visual_tokens(1126, 661) == 960
    env["RCMU_MAX_PIXELS"] = str(300 * 28 * 28)
    text = runner.invoke(app, ["ask", str(scene), "Who?", "--context-only"], env=env)
    assert text.exit_code == 0, text.output
    assert f"visual tokens: {visual_tokens(1126, 661, max_pixels=300 * 28 * 28)}" in text.stderr
    assert visual_tokens(1126, 661, max_pixels=300 * 28 * 28) <= 300
