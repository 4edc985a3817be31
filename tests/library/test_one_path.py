"""One recognition path: `rcmu index` and `rcmu ask` see the same faces as the same people.

Both call `Recognizer.see` then `Recognizer.match` (the index in a worker process, the question in
the graph's detect and recall nodes), so on the same photo every face gets the same entity at the
same distance, whichever way it was found.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _library_helpers import copy, mirrored, settings

from rcmu_agent import Assistant

pytestmark = pytest.mark.integration


def test_index_and_ask_find_the_same_entity_at_the_same_distance(tmp_path: Path, faces_dir: Path) -> None:
    ref, scenes = faces_dir / "reference", faces_dir / "scenes"
    photo = copy(scenes / "two_people.jpg", tmp_path / "photos" / "two_people.jpg")
    for name in ("obama1.jpg", "alex_lacamoire1.jpg"):  # Alex: someone nobody taught
        copy(scenes / name, tmp_path / "photos" / name)
        mirrored(scenes / name, tmp_path / "photos" / f"mirrored_{name}")
    mirrored(scenes / "two_people.jpg", tmp_path / "photos" / "mirrored_two_people.jpg")
    # six new photos: enough for the indexer to hand the pixel work to two worker processes
    assistant = Assistant(settings(tmp_path / "home", library_workers=2))
    assistant.remember("Barack Obama", info="44th president", photos=[ref / "obama_obama.jpg"])
    assistant.remember("Joe Biden", info="46th president", photos=[ref / "biden_biden.jpg"])

    report = assistant.index_library(tmp_path / "photos")
    assert report.added == 6 and not report.skipped
    hits = assistant.library.search.search("default", people=["Barack Obama", "Joe Biden"])
    photo_id = next(h.id for h in hits if Path(h.path).name == "two_people.jpg")
    indexed = assistant.library.store.db.rows(
        "SELECT x1, y1, x2, y2, entity_id, distance FROM regions WHERE photo_id=? ORDER BY x1", (photo_id,)
    )
    asked = assistant.ask("Who is here?", photo, context_only=True)
    found = sorted((e for e in asked.regions if e.category == "person"), key=lambda e: e.box[0] if e.box else 0)

    assert len(found) == len(indexed) == 2
    for row, entry in zip(indexed, found, strict=True):
        assert (row["x1"], row["y1"], row["x2"], row["y2"]) == entry.box
        assert row["entity_id"] == entry.entity_id is not None
        assert row["distance"] == pytest.approx(entry.distance, abs=1e-9)
    assert [e.name for e in found] == ["Barack Obama", "Joe Biden"]
