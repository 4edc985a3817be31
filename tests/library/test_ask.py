"""Questions over the photo library (multimodal RAG) through the graph — with a tiny Qwen2-VL loaded from
disk and with the OpenAI-compatible backend against a loopback server — plus the CLI commands and
cluster merge/split."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from _library_helpers import copy, settings, with_exif
from PIL import Image
from typer.testing import CliRunner

from rcmu_agent import Assistant
from rcmu_agent.cli import app
from rcmu_agent.photos import PhotoRef
from rcmu_agent.schema import Region
from rcmu_agent.testing import Reply, build_tiny_qwen2vl, serve
from rcmu_agent.visual_budget import fit_to_budget

pytestmark = pytest.mark.integration  # dlib, MiniLM, Chroma, a tiny VLM

QUESTION = "Who is with Obama?"


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> SimpleNamespace:
    root, home = tmp_path_factory.mktemp("photos"), tmp_path_factory.mktemp("home")
    ref, scenes = faces_dir / "reference", faces_dir / "scenes"
    with_exif(scenes / "two_people.jpg", root / "paris" / "two_people.jpg", datetime(2024, 5, 1, 10), (48.8584, 2.2945))
    copy(scenes / "obama1.jpg", root / "obama1.jpg")
    copy(ref / "rose_leslie_img1.jpg", root / "rose_a.jpg")
    copy(ref / "rose_leslie_img2.jpg", root / "rose_b.jpg")
    teacher = Assistant(settings(home))
    teacher.remember("Obama", info="Barack Obama was the 44th president", photos=[ref / "obama_obama.jpg"])
    teacher.remember("Biden", info="Joe Biden was the 46th president", photos=[ref / "biden_biden.jpg"])
    report = teacher.index_library(root)
    assert report.added == 4
    model = build_tiny_qwen2vl(tmp_path_factory.mktemp("models") / "qwen")
    return SimpleNamespace(root=root, home=home, model=model)


def test_library_question_through_the_tiny_qwen2vl(lib: SimpleNamespace) -> None:
    assistant = Assistant(settings(lib.home, model=str(lib.model), max_new_tokens=12))
    answer = assistant.ask_library(QUESTION, limit=2)
    assert {Path(p.path).name for p in answer.photos} == {"two_people.jpg", "obama1.jpg"}
    collage = assistant.photo(str(answer.photo))
    assert collage.size == (2 * 448, 448)  # two photos side by side, 448-pixel cells
    lines = answer.prompt.split("\n")
    assert lines[-1] == QUESTION and lines[-2].startswith("Answer the following question based on the information")
    n = [p.id for p in answer.photos].index(next(p.id for p in answer.photos if p.path.endswith("two_people.jpg"))) + 1
    assert any(f"Photo {n}: two_people.jpg, taken 2024-05-01 10:00, at 48.8584,2.2945; it shows Biden, Obama" in line
               for line in lines)  # fmt: skip
    assert any(f"Joe Biden was the 46th president (in photo {n}: two_people.jpg" in line for line in lines)
    # the same collage and context through the ordinary photo route gives the same prompt and answer
    given = [Region(box=e.box, category=e.category, info=e.info) for e in answer.regions if e.box and e.info]
    direct = assistant.ask(QUESTION, PhotoRef(str(answer.photo)), regions=given)
    assert direct.prompt == answer.prompt and direct.text == answer.text and answer.text


def _pixels(data_url: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as jpeg:
        return np.asarray(jpeg.convert("RGB"), dtype=np.float32)


def openai(home: Path, url: str) -> Any:
    return settings(home, backend="openai", base_url=url, model="rc-qwen2-vl", api_key="sk-test")


def test_library_question_over_openai_cites_photos_and_regions(lib: SimpleNamespace) -> None:
    with serve() as server:
        plan = Assistant(openai(lib.home, server.url)).ask_library(QUESTION, context_only=True)
        by_name = {e.name: e.index for e in plan.regions if e.name}
        photo_entry = next(e.index for e in plan.regions if e.category == "photo" and "two_people" in (e.info or ""))
        server.default = Reply(text=f"Joe Biden [{by_name['Biden']}] is with him in photo [{photo_entry}] [42].")
        answer = Assistant(openai(lib.home, server.url)).ask_library(QUESTION)
    (sent,) = server.requests
    image_part, text_part = sent.body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": plan.prompt} and answer.prompt == plan.prompt
    sent, collage = (
        _pixels(image_part["image_url"]["url"]),
        np.asarray(fit_to_budget(Assistant(openai(lib.home, server.url)).photo(str(answer.photo)))),
    )
    assert sent.shape == collage.shape and np.abs(sent - collage).mean() < 3  # budget-sized JPEG, quality 92
    assert answer.invalid_citations == [42]
    biden, photo = answer.photo_citations
    (hit,) = Assistant(settings(lib.home)).search_photos(people=["Biden"])
    assert biden.path == photo.path == hit.path and biden.path.endswith("two_people.jpg")
    assert biden.name == "Biden" and biden.box == next(r.box for r in hit.regions if r.info == "Biden")
    assert photo.box is None and photo.category == "photo"
    assert [c.name for c in answer.citations if c.valid] == ["Biden", None]


runner = CliRunner()


def rcmu(home: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    base = {"RCMU_HOME": str(home), "RCMU_OBJECT_DETECTOR": "", "RCMU_IMAGE_EMBEDDING_MODEL": ""}
    return runner.invoke(app, list(args), env={**base, **(env or {})}, catch_exceptions=False)


def test_cli_index_search_people_split_merge_name_and_ask(lib: SimpleNamespace, tmp_path: Path) -> None:
    result = rcmu(lib.home, "index", str(lib.root))
    assert result.exit_code == 0, result.output
    assert "4 photo(s) indexed: 0 added, 4 unchanged" in result.stdout
    assert rcmu(lib.home, "index", str(tmp_path / "nowhere")).exit_code == 2

    found = json.loads(rcmu(lib.home, "search", "--person", "Obama", "--person", "Biden", "--json").stdout)
    assert [Path(h["path"]).name for h in found] == ["two_people.jpg"]
    dated = rcmu(lib.home, "search", "--since", "2024-01-01", "--until", "2024-12-31")
    assert dated.exit_code == 0 and "two_people.jpg" in dated.stdout and "obama1.jpg" not in dated.stdout
    assert rcmu(lib.home, "search", "--since", "May 1st").exit_code == 2

    (cluster,) = json.loads(rcmu(lib.home, "people", "--json").stdout)
    assert cluster["size"] == 2 and all(Path(c).is_file() for c in cluster["crops"])
    split = rcmu(lib.home, "split", str(cluster["id"]), str(cluster["faces"][1]))
    assert split.exit_code == 0, split.output
    clusters = json.loads(rcmu(lib.home, "people", "--json").stdout)
    assert sorted(c["size"] for c in clusters) == [1, 1]
    merged = rcmu(lib.home, "merge-clusters", *[str(c["id"]) for c in clusters])
    assert merged.exit_code == 0 and "now has 2 face(s)" in merged.stdout
    named = rcmu(lib.home, "name", str(clusters[0]["id"]), "Rose", "--info", "Rose is an actress and my friend")
    assert named.exit_code == 0 and "Rose" in named.stdout
    roses = rcmu(lib.home, "search", "--person", "Rose")
    assert "rose_a.jpg" in roses.stdout and "rose_b.jpg" in roses.stdout and "two_people" not in roses.stdout
    assert "no unnamed faces" in rcmu(lib.home, "people").stdout

    context = rcmu(lib.home, "ask", "--library", "What does Rose do?", "--context-only")
    assert context.exit_code == 0 and "Rose is an actress and my friend (in photo" in " ".join(context.stdout.split())
    with serve() as server:
        server.default = Reply(text="She is an actress [2].")
        env = {"RCMU_BACKEND": "openai", "RCMU_BASE_URL": server.url, "RCMU_MODEL": "m", "RCMU_API_KEY": "k"}
        asked = rcmu(lib.home, "ask", "--library", "What does Rose do?", env=env)
    assert asked.exit_code == 0 and "She is an actress [2]." in asked.stdout
    assert "[2] " in asked.stderr and "rose_" in asked.stderr
    assert rcmu(lib.home, "ask", "--library", "photo.jpg", "What?").exit_code == 2


def test_split_out_of_a_named_cluster_is_never_renamed_by_a_guess(lib: SimpleNamespace, faces_dir: Path) -> None:
    assistant = Assistant(settings(lib.home))
    (rose,) = [c for c in assistant.people(include_named=True) if c.name == "Rose"]
    assistant.split_cluster(rose.id, rose.faces[1:])
    assert len(assistant.search_photos(people=["Rose"])) == 1
    assistant.remember("Kit", info="an actor", photos=[faces_dir / "reference" / "kit_harington_john1.jpeg"])
    assert len(assistant.search_photos(people=["Rose"])) == 1  # the memory changed: names were re-matched
