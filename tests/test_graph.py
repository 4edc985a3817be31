"""The whole graph end to end: real dlib faces, real Chroma, a tiny Qwen2-VL loaded from disk through
the same `from_pretrained` path as a hub id (with and without a LoRA adapter), and the OpenAI-compatible
backend over real HTTP to a loopback server that checks the exact text and image it received.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rcmu_agent import Assistant, Settings
from rcmu_agent.errors import InvalidInputError, ModelLoadError
from rcmu_agent.images import load_image
from rcmu_agent.parts import Parts
from rcmu_agent.schema import Region
from rcmu_agent.testing import Reply, build_tiny_lora_adapter, build_tiny_qwen2vl, serve
from rcmu_agent.vault import photo_id
from rcmu_agent.visual_budget import fit_to_budget

OBAMA_INFO = "Barack Obama was the 44th president of the United States and loves basketball"
BIDEN_INFO = "Joe Biden was the 46th president and enjoys ice cream"
# two_people.jpg is 1126x661: Obama's face (253,47,409,203), Biden's (778,57,965,243)
EXPECTED_PROMPT = (
    "[1]: The information of the person located at <|box_start|>(224,71),(363,307)<|box_end|> in the image: "
    f"{OBAMA_INFO}.\n"
    "[2]: The information of the person located at <|box_start|>(690,86),(857,367)<|box_end|> in the image: "
    f"{BIDEN_INFO}.\n"
    "Answer the following question based on the information above and the given image, "
    "and provide citations for your response.\n"
    "Who is on the left?"
)
NO_MODEL: dict[str, Any] = {"object_detector": None, "image_embedding_model": None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    model = build_tiny_qwen2vl(root / "qwen")
    return {"model": model, "adapter": build_tiny_lora_adapter(model, root / "adapter")}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("home")
    teacher = Assistant(Settings(home=home, **NO_MODEL))
    ref = faces_dir / "reference"
    teacher.remember("Barack Obama", info=OBAMA_INFO, photos=[ref / "obama_obama.jpg", ref / "obama_obama2.jpg"])
    teacher.remember("Joe Biden", info=BIDEN_INFO, photos=[ref / "biden_biden.jpg"])
    return home


@pytest.fixture()
def scene(faces_dir: Path) -> Path:
    return faces_dir / "scenes" / "two_people.jpg"


def reference_generate(model_dir: Path, text: str, image: Image.Image, adapter: Path | None = None) -> str:
    """Greedy decoding written out by hand: the Qwen2-VL chat layout, image pads, generate, decode."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    model: Any = Qwen2VLForConditionalGeneration.from_pretrained(model_dir)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    budget = Settings()  # the visual token budget the agent applies (RCMU_MIN_PIXELS/RCMU_MAX_PIXELS)
    size = {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}
    vision = processor(images=[image], size=size, return_tensors="pt")
    pads = int(vision["image_grid_thw"][0].prod()) // 4
    chat = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|>{'<|image_pad|>' * pads}<|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(chat, return_tensors="pt", add_special_tokens=False)
    # image tokens marked as Qwen2VLProcessor marks them, so generation uses multimodal RoPE
    ids["mm_token_type_ids"] = (ids["input_ids"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")).int()
    with torch.inference_mode():
        out = model.eval().generate(**ids, **vision, max_new_tokens=16, do_sample=False)
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)).strip()


@pytest.mark.integration
def test_context_only_composes_the_exact_prompt_without_a_model(home: Path, scene: Path) -> None:
    assistant = Assistant(Settings(home=home, model="/nonexistent/model", **NO_MODEL))
    answer = assistant.ask("Who is on the left?", scene, context_only=True)
    assert answer.prompt == EXPECTED_PROMPT
    assert answer.context_only and answer.text == ""
    by_index = {r.index: r for r in answer.regions}
    assert by_index[1].name == "Barack Obama" and by_index[2].name == "Joe Biden"
    assert 240 <= by_index[1].box[0] <= 260 and 770 <= by_index[2].box[0] <= 790  # type: ignore[index]


@pytest.mark.integration
@pytest.mark.parametrize("with_adapter", [False, True])
def test_transformers_backend_end_to_end(home: Path, scene: Path, tiny: dict[str, Path], with_adapter: bool) -> None:
    adapter = tiny["adapter"] if with_adapter else None
    settings = Settings(
        home=home, model=str(tiny["model"]), adapter=str(adapter) if adapter else None, max_new_tokens=16, **NO_MODEL
    )
    nodes: list[str] = []
    answer = Assistant(settings).ask("Who is on the left?", scene, on_update=lambda node, _: nodes.append(node))
    assert nodes == ["route", "detect", "recall", "compose", "answer", "cite"]
    assert answer.prompt == EXPECTED_PROMPT
    expected = reference_generate(tiny["model"], EXPECTED_PROMPT, load_image(scene), adapter)
    assert answer.text == expected and answer.text


@pytest.mark.integration
def test_adapter_changes_the_answer(home: Path, scene: Path, tiny: dict[str, Path]) -> None:
    base = reference_generate(tiny["model"], EXPECTED_PROMPT, load_image(scene))
    tuned = reference_generate(tiny["model"], EXPECTED_PROMPT, load_image(scene), tiny["adapter"])
    assert base != tuned  # otherwise the adapter test above would prove nothing


def _pixels(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as jpeg:
        return np.asarray(jpeg.convert("RGB"), dtype=np.float32)


def openai_settings(home: Path, url: str) -> Settings:
    return Settings(home=home, backend="openai", base_url=url, model="rc-qwen2-vl", api_key="sk-test", **NO_MODEL)


@pytest.mark.integration
def test_openai_backend_end_to_end_with_citations(home: Path, scene: Path) -> None:
    with serve() as server:
        server.default = Reply(text="Barack Obama [1] is on the left, beside Joe Biden [2][5].")
        answer = Assistant(openai_settings(home, server.url)).ask("Who is on the left?", scene)
    (sent,) = server.requests
    (message,) = sent.body["messages"]
    assert message["role"] == "user" and sent.body["model"] == "rc-qwen2-vl"
    image_part, text_part = message["content"]
    assert text_part == {"type": "text", "text": EXPECTED_PROMPT}
    sent, expected = _pixels(image_part["image_url"]["url"]), np.asarray(fit_to_budget(load_image(scene)))
    assert sent.shape == expected.shape and np.abs(sent - expected).mean() < 3  # the budget's size, JPEG q92
    assert [c.name for c in answer.citations if c.valid] == ["Barack Obama", "Joe Biden"]
    assert answer.citations[0].box is not None and answer.citations[0].box[0] < 300
    assert answer.invalid_citations == [5]
    assert not answer.unanswerable


@pytest.mark.integration
def test_async_ask_sends_the_same_request_and_runs_concurrently(home: Path, scene: Path) -> None:
    """`aask` is the same graph: same prompt and pixels; many questions are in flight at once."""
    with serve() as server:
        server.default = Reply(text="Barack Obama [1] is on the left.", delay=0.1)
        assistant = Assistant(openai_settings(home, server.url))

        async def many() -> list[Any]:
            return await asyncio.gather(*(assistant.aask("Who is on the left?", scene) for _ in range(4)))

        answers = asyncio.run(many())
        follow = asyncio.run(assistant.aask("Who is on the left?", scene, thread_id="async-1"))
        later = assistant.ask("And who is on the right?", thread_id="async-1")  # same checkpoint file, sync
    assert later.photo == photo_id(scene.read_bytes()) and len(later.regions) == 2
    assert {r.body["messages"][0]["content"][1]["text"] for r in server.requests[:5]} == {EXPECTED_PROMPT}
    assert all([c.name for c in a.citations] == ["Barack Obama"] for a in [*answers, follow])
    assert server.peak_in_flight > 1  # the model calls overlapped instead of queueing behind one another


@pytest.mark.integration
def test_follow_up_on_a_thread_survives_a_new_process(home: Path, scene: Path) -> None:
    with serve() as server:
        server.default = Reply(text="Cannot be answered. The information does not say.")
        Assistant(openai_settings(home, server.url)).ask("Who is on the left?", scene, thread_id="t-1")
        answer = Assistant(openai_settings(home, server.url)).ask("What does he enjoy?", thread_id="t-1")
    assert len(server.requests) == 2
    follow_up = server.requests[1].body["messages"][0]["content"]
    assert follow_up[0]["type"] == "image_url"  # the thread's photo is sent again
    assert follow_up[1]["text"] == EXPECTED_PROMPT.replace("Who is on the left?", "What does he enjoy?")
    assert answer.unanswerable


@pytest.mark.integration
def test_memory_question_without_photo(home: Path) -> None:
    with serve() as server:
        server.default = Reply(text="He enjoys ice cream [1].")
        answer = Assistant(openai_settings(home, server.url)).ask("What does Joe Biden enjoy?")
    content = server.requests[0].body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["text"]
    assert content[0]["text"].startswith(f"[1]: The information of the person Joe Biden: {BIDEN_INFO}.\n")
    assert answer.citations[0].name == "Joe Biden" and answer.citations[0].box is None


class _NoDetector:
    def detect(self, *args: Any) -> Any:
        raise AssertionError("detection must be skipped when the caller gives regions with info")


@pytest.mark.integration
def test_caller_regions_skip_detection_and_resolve_placeholders(home: Path, shared_data: Path) -> None:
    parts = Parts(Settings(home=home, model="/nonexistent", **NO_MODEL))
    parts.recognizer.__dict__["face_detector"] = _NoDetector()
    regions = [
        Region(box=(80, 20, 420, 290), category="cat", info="Chelsea is a 6-year-old tabby who naps all day"),
        Region(box=(0, 0, 60, 60), category="toy", info="A mouse toy bought in 2021"),
    ]
    answer = Assistant(parts=parts).ask(
        "Is <region2> older than <region1>?",
        shared_data / "objects" / "chelsea.png",
        regions=regions,
        context_only=True,
    )
    lines = answer.prompt.split("\n")
    assert lines[0].startswith("[1]: The information of the toy located at <|box_start|>(0,0),(133,200)<|box_end|>")
    assert lines[1].startswith("[2]: The information of the cat located at")
    assert lines[-1] == (
        "Is the toy located at <|box_start|>(0,0),(133,200)<|box_end|> older than the cat located at "
        "<|box_start|>(177,66),(931,966)<|box_end|>?"
    )


@pytest.mark.integration
def test_bad_caller_box_is_refused(home: Path, scene: Path) -> None:
    assistant = Assistant(Settings(home=home, **NO_MODEL))
    with pytest.raises(InvalidInputError, match="outside the 1126x661 image"):
        assistant.ask("?", scene, regions=[Region(box=(0, 0, 2000, 100), info="x")], context_only=True)


@pytest.mark.integration
def test_unloadable_model_names_the_fix(home: Path, scene: Path) -> None:
    with pytest.raises(ModelLoadError, match="RCMU_MODEL"):
        Assistant(Settings(home=home, model="/nonexistent/model", **NO_MODEL)).ask("Who?", scene)
    with pytest.raises(ModelLoadError, match="RCMU_MODEL"):  # a hub id with the hub unreachable (offline)
        Assistant(Settings(home=home, model="someone/not-cached", processor=None, **NO_MODEL)).ask("Who?", scene)


@pytest.mark.unit
def test_module_graph_for_langgraph_server() -> None:
    import json

    from rcmu_agent.server import graph

    config = json.loads((Path(__file__).resolve().parents[1] / "langgraph.json").read_text())
    assert config["graphs"]["rcmu"] == "./rcmu_agent/server.py:graph"
    assert {
        "route",
        "detect",
        "recall",
        "recall_memory",
        "compose",
        "compose_memory",
        "library_retrieve",
        "answer",
        "cite",
        "cite_library",
    } <= set(graph.get_graph().nodes)  # every route its own nodes, so Studio draws them all


@pytest.mark.integration
def test_encode_marks_image_tokens_for_multimodal_rope(tiny: dict[str, Path], scene: Path) -> None:
    """Without token types transformers gives image tokens 1-D text positions; the agent must not."""
    from rcmu_agent.backends.hf import TransformersVLM

    vlm = TransformersVLM.from_settings(Settings(model=str(tiny["model"]), device="cpu"))
    inputs = vlm.encode("Who is on the left?", load_image(scene), answer="Obama")
    pads = inputs["input_ids"] == vlm.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(inputs["mm_token_type_ids"].bool(), pads) and int(pads.sum()) > 0
    assert bool((inputs["labels"][pads] == -100).all())
    assert "mm_token_type_ids" not in vlm.encode("Who?", None)
