"""With an object detector and a CLIP model configured, indexing also finds the user's objects and stores
an image embedding per photo (tiny random OWLv2 and CLIP, loaded from disk like hub ids)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _library_helpers import copy

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import build_tiny_clip, build_tiny_owlv2

pytestmark = pytest.mark.integration  # tiny OWLv2 and CLIP


def test_objects_and_image_embeddings_are_indexed(tmp_path: Path, shared_data: Path) -> None:
    clip = build_tiny_clip(tmp_path / "clip")
    settings = Settings(
        home=tmp_path / "home",
        object_detector=str(build_tiny_owlv2(tmp_path / "owlv2")),
        image_embedding_model=str(clip),
        object_score_threshold=0.0,  # random weights: keep every box
        object_threshold=-1.0,  # and accept any similarity, so recognition runs deterministically
    )
    assistant = Assistant(settings)
    cat = shared_data / "objects" / "chelsea.png"
    assistant.remember("Chelsea", category="cat", info="Chelsea is our tabby", photos=[cat])
    root = tmp_path / "photos"
    copy(cat, root / "pets" / "chelsea.png")
    copy(shared_data / "objects" / "coffee.png", root / "kitchen" / "coffee.png")
    report = assistant.index_library(root)
    assert (report.added, report.photos) == (2, 2)

    hits = assistant.search_photos(people=["Chelsea"])
    assert hits and all(any(r.info == "Chelsea" and r.category == "cat" for r in h.regions) for h in hits)
    assert all("Chelsea (cat) at" in h.context for h in hits)
    images = assistant.library.store.col("library_images")
    assert images.count() == 2 and images.metadata["embedding_model"] == str(clip)
    got = images.get(include=["embeddings"])
    assert len(got["embeddings"][0]) == assistant.parts.recognizer.image_embedder.dim  # type: ignore[union-attr]
