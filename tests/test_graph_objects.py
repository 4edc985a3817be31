"""Objects through the graph: memory categories drive the open-vocabulary detector, CLIP crops are
matched to remembered objects. Tiny random OWLv2 and CLIP models, loaded from disk like hub ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import build_tiny_clip, build_tiny_owlv2

pytestmark = pytest.mark.integration  # tiny OWLv2 and CLIP through the graph


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision")
    return {"detector": build_tiny_owlv2(root / "owlv2"), "clip": build_tiny_clip(root / "clip")}


def test_object_entities_are_detected_and_recognised(
    tmp_path: Path, shared_data: Path, vision: dict[str, Path]
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        object_detector=str(vision["detector"]),
        image_embedding_model=str(vision["clip"]),
        object_score_threshold=0.0,  # random weights: keep every box
        object_threshold=-1.0,  # and accept any similarity, to exercise the flow deterministically
    )
    assistant = Assistant(settings)
    cat = shared_data / "objects" / "chelsea.png"
    chelsea = assistant.remember("Chelsea", category="cat", info="Chelsea is our 6-year-old tabby", photos=[cat])
    assert assistant.parts.memory.categories("default") == ["cat"]

    asked: list[list[str]] = []
    detector = assistant.parts.recognizer.object_detector
    assert detector is not None
    original = detector.detect

    def spy(image: Any, categories: Any, **kwargs: Any) -> Any:
        asked.append(list(categories))
        return original(image, categories, **kwargs)

    detector.detect = spy  # type: ignore[method-assign]
    answer = assistant.ask("What is the cat doing?", cat, context_only=True)
    assert asked == [["cat"]]  # queried with exactly the categories in memory
    objects = [r for r in answer.regions if r.region is not None and r.region.source == "object"]
    assert objects and all(r.category == "cat" for r in objects)
    recognised = [r for r in objects if r.entity_id == chelsea.id]
    assert len(recognised) == 1  # one region per entity, the closest one
    assert recognised[0].index == 1 and "Chelsea is our 6-year-old tabby." in answer.prompt


def test_people_only_memory_never_loads_the_detector(tmp_path: Path, faces_dir: Path) -> None:
    settings = Settings(home=tmp_path / "home", object_detector="/nonexistent/detector", image_embedding_model=None)
    assistant = Assistant(settings)
    assistant.remember("Joe Biden", info="46th president", photos=[faces_dir / "reference" / "biden_biden.jpg"])
    answer = assistant.ask("Who?", faces_dir / "scenes" / "two_people.jpg", context_only=True)
    assert [r.name for r in answer.regions if r.name] == ["Joe Biden"]
