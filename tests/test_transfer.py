"""Export and import, for real: dlib, MiniLM, Chroma embedded and a real Chroma server, real processes.

The proofs issue 15 names: an embedded → server → embedded round trip keeps the same entities and the
same recognition (distances ± 1e-6) on every shared scene photo; a kill -9 in the middle of a
200-entity import, then a rerun, leaves no duplicate and nothing missing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from rcmu_agent.assistant import Assistant
from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.memory.transfer import FORMAT_VERSION, ImportRow, import_rows
from rcmu_agent.settings import Settings

pytestmark = pytest.mark.integration  # dlib, MiniLM, Chroma (embedded and server), killed subprocesses

PEOPLE = {
    "alex_lacamoire": ("Alex Lacamoire", "Alex Lacamoire is the music director of Hamilton."),
    "biden": ("Joe Biden", "Joe Biden was the 46th president of the United States."),
    "kit_harington": ("Kit Harington", "Kit Harington played Jon Snow."),
    "obama": ("Barack Obama", "Barack Obama was the 44th president of the United States."),
    "rose_leslie": ("Rose Leslie", "Rose Leslie played Ygritte."),
}


def _assistant(home: Path, **kwargs: Any) -> Assistant:
    return Assistant(Settings(home=home, object_detector=None, image_embedding_model=None, **kwargs))


def _references(faces_dir: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for path in sorted((faces_dir / "reference").iterdir()):
        out.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    return out


def _small(faces_dir: Path, folder: Path, side: int = 360) -> dict[str, Path]:
    """One reference photo per person, scaled down: detection in tens of milliseconds."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for person, paths in _references(faces_dir).items():
        with Image.open(paths[0]) as img:
            small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail((side, side))
            out[person] = folder / f"{person}.jpg"
            small.save(out[person], quality=90)
    return out


def _entities(assistant: Assistant, user: str | None = None) -> list[dict[str, Any]]:
    """What must survive a trip: everything but where the photo copies live (their content digests do)."""
    return [
        {**e.model_dump(exclude={"photos"}), "photos": sorted(Path(p).stem for p in e.photos)}
        for e in assistant.entities(user=user)
    ]


def _recognised(assistant: Assistant, photo: Path) -> list[tuple[str | None, str | None, tuple[int, ...], float]]:
    answer = assistant.ask("Who is in this photo?", photo, context_only=True)
    return sorted(
        (r.name, r.entity_id, tuple(round(v) for v in r.box or ()), r.distance if r.distance is not None else -1.0)
        for r in answer.regions
    )


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RCMU_HOME": str(home),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


RCMU = str(Path(sys.executable).with_name("rcmu"))  # the installed command: `python -m` from the repository
# root would import the bare `rcmu_agent/` folder, which lacks the mapped subpackages of a non-editable install


def _rcmu(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [RCMU, *args]
    return subprocess.run(command, env=_env(home), capture_output=True, text=True, timeout=timeout)


# ---- the round trip ----------------------------------------------------------------------------------
def test_round_trip_embedded_server_embedded_keeps_entities_and_recognition(
    tmp_path: Path, faces_dir: Path, shared_data: Path, chroma_server: str
) -> None:
    embedded = _assistant(tmp_path / "embedded")
    refs = _references(faces_dir)
    for person, (name, info) in PEOPLE.items():
        embedded.remember(name, info=info, photos=refs[person])
    scenes = sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    scenes = [p for p in scenes if p.parent.name != "reference"]
    assert len(scenes) >= 5
    before = _entities(embedded)
    seen = {photo: _recognised(embedded, photo) for photo in scenes}
    assert {n for found in seen.values() for n, *_ in found} >= {"Barack Obama", "Joe Biden", "Alex Lacamoire"}

    first = embedded.export_memory(tmp_path / "backup")
    assert first.users == {"default": 5} and first.photos == 9
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["format"] == "rcmu-memory" and manifest["version"] == FORMAT_VERSION
    lines = [json.loads(line) for line in (tmp_path / "backup" / "entities.jsonl").read_text().splitlines()]
    assert {"id", "user", "name", "category", "info", "created_at", "photos"} <= set(lines[0])
    assert all((tmp_path / "backup" / p).is_file() for line in lines for p in line["photos"])
    assert not any(f.suffix in {".npy", ".bin", ".sqlite3"} for f in (tmp_path / "backup").rglob("*"))  # no vectors

    server = _assistant(tmp_path / "server-home", chroma_url=chroma_server)
    report = server.import_memory(tmp_path / "backup", workers=1)  # faces described in a worker process
    assert (report.added, report.updated, report.failed) == (5, 0, [])
    assert not (tmp_path / "server-home" / "chroma").exists()  # the vectors went to the server
    assert _entities(server) == before
    for photo in scenes:
        _same_recognition(_recognised(server, photo), seen[photo], photo)

    server.export_memory(tmp_path / "backup2")
    back = _assistant(tmp_path / "embedded-again")
    assert back.import_memory(tmp_path / "backup2", workers=0).added == 5
    assert _entities(back) == before
    for photo in scenes:
        _same_recognition(_recognised(back, photo), seen[photo], photo)


def _same_recognition(got: list[Any], want: list[Any], photo: Path) -> None:
    assert [g[:3] for g in got] == [w[:3] for w in want], photo
    for g, w in zip(got, want, strict=True):
        assert abs(g[3] - w[3]) <= 1e-6, (photo, g, w)


# ---- kill -9 mid-import, then a rerun ----------------------------------------------------------------
def _knowledge_base(folder: Path, small: dict[str, Path], count: int) -> Path:
    """`count` entities, each with its own photo: a reference flipped and rescaled."""
    photos = folder / "photos"
    photos.mkdir(parents=True)
    people = sorted(small)
    rows = []
    for n in range(count):
        with Image.open(small[people[n % len(people)]]) as img:
            variant = ImageOps.mirror(img) if n % 2 else img.copy()
            scale = 1 - n // (2 * len(people)) / 100  # with the person and the flip: a different photo for every n
            variant = variant.resize((round(variant.width * scale), round(variant.height * scale)))
            variant.save(photos / f"{n:03d}.jpg", quality=88)
        rows.append(
            {"name": f"Person {n:03d}", "info": f"Entry {n} of the knowledge base.", "photos": [f"photos/{n:03d}.jpg"]}
        )
    path = folder / "kb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_killed_import_resumes_with_no_duplicate_and_nothing_missing(tmp_path: Path, faces_dir: Path) -> None:
    kb = _knowledge_base(tmp_path / "kb", _small(faces_dir, tmp_path / "small", side=300), 200)
    home = tmp_path / "home"
    command = [RCMU, "import", str(kb), "--workers", "1"]
    proc = subprocess.Popen(
        command, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        committed = 0
        while committed < 40:  # at least one batch in memory: the kill lands mid-import
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the import committed nothing in time"
            folder = home / "photos" / "default"
            committed = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert committed < 200, "the import finished before the kill"

    rerun = _rcmu(home, "import", str(kb), "--workers", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert "0 failed" in rerun.stdout and "unchanged" in rerun.stdout
    again = _rcmu(home, "import", str(kb), "--workers", "1", "--json")
    assert json.loads(again.stdout) | {"seconds": 0} == {
        "source": str(kb), "user": "default", "rows": 200, "added": 0, "updated": 0,
        "unchanged": 200, "failed": [], "seconds": 0,
    }  # fmt: skip

    assistant = _assistant(home)
    entities = assistant.entities()
    assert sorted(e.name for e in entities) == [f"Person {n:03d}" for n in range(200)]
    assert all(len(e.photos) == 1 and Path(e.photos[0]).is_file() for e in entities)
    faces = assistant.parts.memory._col("faces")
    assert faces.count() == 200  # no orphan vector from the killed batch
    assert sorted(p.name for p in (home / "photos" / "default").iterdir()) == sorted(e.id for e in entities)
    assert not (home / "memory.journal").exists()
    probe = kb.parent / "photos" / "007.jpg"
    assert [r[0] for r in _recognised(assistant, probe)] == ["Person 007"]


# ---- rows that cannot be used, idempotence, users ----------------------------------------------------
def test_bad_rows_are_reported_by_line_and_skipped(tmp_path: Path, faces_dir: Path, shared_data: Path) -> None:
    _small(faces_dir, tmp_path / "small")  # photo paths are relative to the knowledge base's folder
    shutil.copyfile(shared_data / "objects" / "chelsea.png", tmp_path / "chelsea.png")
    kb = tmp_path / "kb.jsonl"
    lines = [
        {"name": "Joe Biden", "info": "Uncle Joe.", "photos": ["small/biden.jpg"]},
        {"name": "Ghost", "info": "Missing photo.", "photos": ["nowhere.jpg"]},
        "not json at all",
        {"info": "No name.", "photos": []},
        {"name": "Chelsea", "info": "A cat, not a face.", "photos": ["chelsea.png"]},
        {"name": "joe biden", "info": "Uncle Joe, as a dog.", "category": "dog", "photos": []},
        {"name": "Joe Biden", "info": "Uncle Joe, who loves ice cream.", "photos": ["./small/obama.jpg"]},
        {"name": "Bad Id", "info": "x", "id": "../../etc", "photos": []},
    ]
    kb.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    assistant = _assistant(tmp_path / "home")
    report = assistant.import_memory(kb, workers=0)
    assert (report.rows, report.added, report.updated) == (8, 1, 1)
    reasons = dict(line.split(": ", 1) for line in (f.removeprefix(f"{kb}:") for f in report.failed))
    assert set(reasons) == {"2", "3", "4", "5", "6", "8"}
    assert reasons["2"] == "photo 'nowhere.jpg' does not exist" and reasons["3"].startswith("not JSON")
    assert "name" in reasons["4"] and "no face found" in reasons["5"]
    assert "already remembered as a person" in reasons["6"] and "entity id" in reasons["8"]
    (biden,) = assistant.entities()
    assert biden.info == "Uncle Joe, who loves ice cream." and len(biden.photos) == 2  # updated, photos add up

    again = assistant.import_memory(kb, workers=0)  # idempotent: the same rows, the same end state
    assert (again.added, again.updated, again.unchanged) == (0, 2, 0)  # row 1, then row 7 again: the last wins
    assert [e.model_dump() for e in assistant.entities()] == [biden.model_dump()]

    table = tmp_path / "kb.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "info", "category", "photos"])
        writer.writerow(["Rose Leslie", "Actress.", "person", "small/rose_leslie.jpg;small/rose_leslie.jpg"])
        writer.writerow(["", "no name", "person", ""])
    report = assistant.import_memory(table, workers=0)
    assert report.added == 1 and report.failed == [f"{table}:3: name is empty"]

    failing = tmp_path / "all-bad.jsonl"
    failing.write_text(json.dumps({"name": "Ghost", "info": "x", "photos": ["gone.jpg"]}) + "\n")
    result = _rcmu(tmp_path / "home", "import", str(failing), "--workers", "0")
    assert result.returncode == 2
    assert f"{failing}:1: photo 'gone.jpg' does not exist" in result.stderr
    assert "no row could be imported" in result.stderr


def test_users_stay_apart_through_export_and_import(tmp_path: Path, faces_dir: Path) -> None:
    small = _small(faces_dir, tmp_path / "small")
    assistant = _assistant(tmp_path / "home")
    alice = assistant.remember("Barack Obama", info="Alice's chess partner.", photos=[small["obama"]], user="alice")
    assistant.remember("Joe Biden", info="Bob's uncle.", photos=[small["biden"]], user="bob")

    only = assistant.export_memory(tmp_path / "alice", user="alice")
    assert only.users == {"alice": 1}
    assert "Bob" not in (tmp_path / "alice" / "entities.jsonl").read_text()
    assert not (tmp_path / "alice" / "photos" / "bob").exists()

    # alice's export into carol, in the same home: carol gets her own entity; alice's is untouched
    report = assistant.import_memory(tmp_path / "alice", user="carol", workers=0)
    (carol,) = assistant.entities(user="carol")
    assert report.added == 1 and carol.id != alice.id and carol.created_at == alice.created_at
    assert assistant.entities(user="alice")[0].model_dump() == alice.model_dump()

    everyone = assistant.export_memory(tmp_path / "everyone", all_users=True)
    assert everyone.users == {"alice": 1, "bob": 1, "carol": 1}
    other = _assistant(tmp_path / "other")
    with pytest.raises(InvalidInputError, match="holds 3 users") as several:
        other.import_memory(tmp_path / "everyone", workers=0)
    with pytest.raises(NotFoundError, match="no entity of user 'dave'") as missing:
        other.import_memory(tmp_path / "everyone", from_user="dave", workers=0)
    assert not [u for u in ("alice", "bob", "carol") if u in f"{several.value} {missing.value}"]  # names no one else
    restored = _rcmu(tmp_path / "other", "import", str(tmp_path / "everyone"), "--all-users", "--workers", "0")
    assert restored.returncode == 0, restored.stderr
    for user in ("alice", "bob", "carol"):
        assert _entities(other, user) == _entities(assistant, user)


def test_export_never_leaves_a_half_folder(tmp_path: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = _small(faces_dir, tmp_path / "small")
    assistant = _assistant(tmp_path / "home")
    for person in ("obama", "biden", "rose_leslie"):
        assistant.remember(PEOPLE[person][0], info=PEOPLE[person][1], photos=[small[person]])
    (tmp_path / ".out.part-dead").mkdir()  # what a killed export leaves: hidden, and swept by the next one

    references = assistant.parts.memory.references  # the export reads each photo through it
    copied: list[str] = []
    real_read = references.read

    def read_then_stop(user: str, entity_id: str, stored: object) -> bytes:
        if len(copied) == 2:
            raise KeyboardInterrupt
        copied.append(str(stored))
        return real_read(user, entity_id, stored)

    monkeypatch.setattr(references, "read", read_then_stop)
    with pytest.raises(KeyboardInterrupt):
        assistant.export_memory(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "small"]  # no OUT, no temporary, no stale one
    monkeypatch.setattr(references, "read", real_read)
    (tmp_path / ".out.part-dead").mkdir()

    assert assistant.export_memory(tmp_path / "out").photos == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "small"]
    with pytest.raises(InvalidInputError, match="already exists"):
        assistant.export_memory(tmp_path / "out")
    result = _rcmu(tmp_path / "home", "export", str(tmp_path / "out2"))
    assert result.returncode == 0 and "exported 3 entit(ies)" in result.stdout


def test_import_rows_from_python_keeps_ids_and_refuses_to_take_another_users(tmp_path: Path, faces_dir: Path) -> None:
    small = _small(faces_dir, tmp_path / "small")
    assistant = _assistant(tmp_path / "home")
    rows = [ImportRow("kb:1", "Kit Harington", "Jon Snow.", "person", (small["kit_harington"],), entity_id="kit")]
    ticks: list[tuple[int, int]] = []
    report = import_rows(
        assistant.parts.recognizer, rows, user="alice", workers=0, progress=lambda *tick: ticks.append(tick)
    )
    assert report.added == 1 and assistant.entities(user="alice")[0].id == "kit"
    assert ticks and ticks[-1] == (1, 1) and all(0 <= d <= t == 1 for d, t in ticks)  # what the bar shows
    renamed = [ImportRow("kb:1", "Kit H.", "Jon Snow, renamed.", "person", (small["kit_harington"],), entity_id="kit")]
    assert import_rows(assistant.parts.recognizer, renamed, user="alice", workers=0).updated == 1  # same id: an update
    (kit,) = assistant.entities(user="alice")
    assert (kit.id, kit.name, len(kit.photos)) == ("kit", "Kit H.", 1)
    import_rows(assistant.parts.recognizer, rows, user="bob", workers=0)  # "kit" is alice's: bob gets a fresh id
    (bobs,) = assistant.entities(user="bob")
    assert bobs.id != "kit" and assistant.entities(user="alice")[0].name == "Kit H."


def test_export_with_the_library_writes_its_metadata(tmp_path: Path, faces_dir: Path) -> None:
    small = _small(faces_dir, tmp_path / "small", side=500)
    assistant = _assistant(tmp_path / "home")
    assistant.remember("Barack Obama", info=PEOPLE["obama"][1], photos=[small["obama"]])
    album = tmp_path / "album"
    album.mkdir()
    with Image.open(faces_dir / "scenes" / "two_people.jpg") as img:
        img.save(album / "party.jpg")
    assert assistant.index_library(album).added == 1
    report = assistant.export_memory(tmp_path / "out", library=True)
    assert report.library_photos == 1
    (photo,) = [json.loads(line) for line in (tmp_path / "out" / "library.jsonl").read_text().splitlines()]
    assert photo["paths"] == [str(album / "party.jpg")] and photo["user"] == "default"
    assert sorted(r["name"] or "" for r in photo["regions"]) == ["", "Barack Obama"]
    assert "descriptor" not in json.dumps(photo)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["library"] == "library.jsonl"


def test_a_memory_larger_than_one_read_is_read_in_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 references broke Chroma's single read ("too many SQL variables"); pages of 3 prove the paging."""
    import numpy as np

    import rcmu_agent.memory._client as client
    from rcmu_agent.memory import MemoryStore, ReferencePhoto, Teaching

    monkeypatch.setattr(client, "PAGE", 3)
    store = MemoryStore(tmp_path / "home")
    vectors = np.random.default_rng(0).normal(size=(7, 128)) * 0.09
    store.remember_many(
        "default",
        [
            Teaching(f"Person {i}", "Info.", "person", (ReferencePhoto(f"{i}".encode(), ".jpg", v.tolist()),))
            for i, v in enumerate(vectors)
        ],
    )
    assert [e.name for e in store.entities("default")] == [f"Person {i}" for i in range(7)]
    matches = store.match_faces("default", vectors.tolist(), 0.6)
    assert [m.entity.name if m else None for m in matches] == [f"Person {i}" for i in range(7)]
    assert all(m is not None and m.distance < 1e-5 for m in matches)
