"""`rcmu import` stays inside its folder (issue 20): a crafted export or knowledge base cannot pull another
user's stored reference photo into the importing user's memory.

The attack, for real (dlib, Chroma, the `rcmu` command): alice has taught a person, so her reference photo
sits under `RCMU_HOME/photos/alice/...`; bob imports a folder whose rows name that photo by an absolute
path, by `../`, through a symlink (to it, to a file inside the folder, a linked folder) and as a hard
link. Every such row fails as `FILE:LINE: reason`, no byte of alice's reaches bob's memory, and bob's
good rows still import.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from rcmu_agent.assistant import Assistant
from rcmu_agent.door import shown_path
from rcmu_agent.errors import InvalidInputError, RcmuError
from rcmu_agent.memory.transfer._paths import read_photo, written_path
from rcmu_agent.memory.transfer._read import read_source
from rcmu_agent.settings import Settings

RCMU = str(Path(sys.executable).with_name("rcmu"))
LINK = "is a symbolic link, or lies in a linked folder"


def _assistant(home: Path) -> Assistant:
    return Assistant(Settings(home=home, object_detector=None, image_embedding_model=None))


def _small(source: Path, target: Path) -> Path:
    """A reference photo scaled down: detection in tens of milliseconds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        small = ImageOps.exif_transpose(img).convert("RGB")
        small.thumbnail((360, 360))
        small.save(target, quality=90)
    return target


def _alice(home: Path, faces_dir: Path, tmp_path: Path) -> tuple[Assistant, Path]:
    """A home where alice taught Barack Obama; her stored reference photo."""
    assistant = _assistant(home)
    photo = _small(faces_dir / "reference" / "obama_obama.jpg", tmp_path / "alice-upload" / "obama.jpg")
    entity = assistant.remember("Barack Obama", info="Alice's chess partner.", photos=[photo], user="alice")
    (stored,) = entity.photos
    assert Path(stored).is_relative_to(home / "photos" / "alice")
    return assistant, Path(stored)


def _crafted(folder: Path, faces_dir: Path, stored: Path) -> dict[str, list[str]]:
    """Bob's folder: two good photos, and every way to name alice's stored photo (or leave the folder).
    Row name → its photo paths, in file order."""
    photos = folder / "photos"
    _small(faces_dir / "reference" / "biden_biden.jpg", photos / "biden.jpg")
    _small(faces_dir / "reference" / "kit_harington_john1.jpeg", photos / "kit.jpg")
    (photos / "inner.jpg").symlink_to(photos / "biden.jpg")  # a link to a file inside: refused too
    (photos / "outer.jpg").symlink_to(stored)
    (folder / "linked").symlink_to(stored.parents[1], target_is_directory=True)  # alice's photos folder
    os.link(stored, photos / "hard.jpg")
    return {
        "Joe Biden": ["photos/biden.jpg"],
        "Absolute": [str(stored)],
        "File URL": [stored.as_uri()],
        "Dot Dot": [os.path.relpath(stored, folder)],
        "Link Out": ["photos/outer.jpg"],
        "Link In": ["photos/inner.jpg"],
        "Folder Link": [f"linked/{stored.parent.name}/{stored.name}"],
        "Hard Link": ["photos/hard.jpg"],
        "Half Good": ["photos/kit.jpg", "photos/outer.jpg"],  # one bad photo fails the whole row
        "Kit Harington": ["./photos/kit.jpg"],
    }


REASONS = {
    "Absolute": "is not a path relative to the folder",
    "File URL": "is not a path relative to the folder",
    "Dot Dot": "leads out of the folder ('..')",
    "Link Out": LINK,
    "Link In": LINK,
    "Folder Link": LINK,
    "Hard Link": "has other hard links",
    "Half Good": LINK,
}


def _export_folder(folder: Path, rows: dict[str, list[str]]) -> Path:
    lines = [{"user": "bob", "name": n, "info": f"{n}, from bob's folder.", "photos": p} for n, p in rows.items()]
    (folder / "entities.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    manifest = {"format": "rcmu-memory", "version": 1, "users": {"bob": len(lines)}, "entities": "entities.jsonl"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _check_refusals(failed: list[str], entities: Path, rows: dict[str, list[str]]) -> None:
    """Each bad row failed at its own line, with its own reason, naming only the path it wrote."""
    names = list(rows)
    want = {}
    for name, reason in REASONS.items():
        bad = rows[name][-1]
        shown = bad.removeprefix("file://")
        want[f"{entities}:{names.index(name) + 1}"] = f"photo {shown_path(shown)} {reason}"  # long ones cut short
    got = dict(line.split(": ", 1) for line in failed)
    assert got == want, failed


def _nothing_of_alices(home: Path, bob: list[Any], stored: Path) -> None:
    assert sorted(e.name for e in bob) == ["Joe Biden", "Kit Harington"]
    alices = hashlib.sha256(stored.read_bytes()).hexdigest()
    held = [p for p in (home / "photos" / "bob").rglob("*") if p.is_file()]
    assert len(held) == 2 and all(hashlib.sha256(p.read_bytes()).hexdigest() != alices for p in held)
    assert {Path(p).parent.parent for e in bob for p in e.photos} == {home / "photos" / "bob"}


# ---- through Assistant.import_memory -------------------------------------------------------------------
@pytest.mark.integration  # dlib, MiniLM, Chroma
def test_a_crafted_export_folder_and_knowledge_base_import_only_their_own_photos(
    tmp_path: Path, faces_dir: Path
) -> None:
    home = tmp_path / "home"
    assistant, stored = _alice(home, faces_dir, tmp_path)
    folder = tmp_path / "bob-export"
    rows = _crafted(folder, faces_dir, stored)
    _export_folder(folder, rows)

    report = assistant.import_memory(folder, user="bob", from_user="bob", workers=0)
    assert (report.rows, report.added, report.updated) == (len(rows), 2, 0)
    _check_refusals(report.failed, folder / "entities.jsonl", rows)
    _nothing_of_alices(home, assistant.entities(user="bob"), stored)
    assert len(assistant.entities(user="alice")) == 1

    # the same rows as a knowledge base in a folder around the home: a path into the home is refused too
    kb = tmp_path / "kb.jsonl"
    moved = {n: [_under("bob-export", p) for p in ps] for n, ps in rows.items()}  # bob-export/../home: a '..'
    in_home = str(stored.relative_to(tmp_path))  # home/photos/alice/...: relative, no link, no '..'
    moved["In Home"] = [in_home]
    kb.write_text(
        "".join(
            json.dumps({"name": n, "info": f"{n}, from bob's folder.", "photos": p}) + "\n" for n, p in moved.items()
        )
    )
    again = assistant.import_memory(kb, user="bob", workers=0)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)  # bob's good rows are there already
    reasons = dict(f.split(": ", 1) for f in again.failed)
    assert reasons.pop(f"{kb}:{len(moved)}") == f"photo {in_home!r} is in the rcmu data folder"
    assert sorted(reasons) == sorted(f"{kb}:{list(moved).index(n) + 1}" for n in REASONS)
    assert all(REASONS[n] in reasons[f"{kb}:{list(moved).index(n) + 1}"] for n in REASONS)
    _nothing_of_alices(home, assistant.entities(user="bob"), stored)


def _under(folder: str, path: str) -> str:
    return path if Path(path).is_absolute() or path.startswith("file:") else f"{folder}/{path}"


# ---- through the `rcmu import` command -----------------------------------------------------------------
@pytest.mark.integration  # the rcmu command: dlib in a worker process, Chroma
def test_rcmu_import_refuses_each_crafted_row_and_loads_the_rest(tmp_path: Path, faces_dir: Path) -> None:
    home = tmp_path / "home"
    assistant, stored = _alice(home, faces_dir, tmp_path)
    folder = tmp_path / "bob-export"
    rows = _crafted(folder, faces_dir, stored)
    _export_folder(folder, rows)
    result = _rcmu(home, "import", str(folder), "--user", "bob", "--from-user", "bob", "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["added"], report["updated"]) == (2, 0)
    _check_refusals(report["failed"], folder / "entities.jsonl", rows)
    assert all(line in result.stderr for line in report["failed"])  # printed as FILE:LINE: reason
    _nothing_of_alices(home, assistant.entities(user="bob"), stored)

    table = tmp_path / "kb.csv"  # a CSV knowledge base in the same folder: photos relative to it
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "info", "category", "photos"])
        writer.writerow(["Rose Leslie", "Actress.", "person", "rose.jpg"])
        writer.writerow(["Stolen", "x", "person", f"rose.jpg;{stored}"])
        writer.writerow(["Stolen Too", "x", "person", "bob-export/linked/" + f"{stored.parent.name}/{stored.name}"])
    _small(faces_dir / "reference" / "rose_leslie_img1.jpg", tmp_path / "rose.jpg")
    result = _rcmu(home, "import", str(table), "--user", "bob", "--workers", "0")
    assert result.returncode == 0, result.stderr
    assert f"{table}:3: photo {shown_path(str(stored))} is not a path relative to the folder" in result.stderr
    assert f"{table}:4: photo 'bob-export/linked/{stored.parent.name}/{stored.name}' {LINK}" in result.stderr
    assert "1 added" in result.stdout and "2 failed" in result.stdout
    assert sorted(e.name for e in assistant.entities(user="bob")) == ["Joe Biden", "Kit Harington", "Rose Leslie"]


def _rcmu(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RCMU_HOME": str(home),
        "RCMU_OBJECT_DETECTOR": "",
        "RCMU_IMAGE_EMBEDDING_MODEL": "",
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return subprocess.run([RCMU, *args], env=env, capture_output=True, text=True, timeout=300)


# ---- the rules alone -----------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_refusal_says_nothing_about_what_exists_outside(tmp_path: Path) -> None:
    folder, outside = tmp_path / "folder", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "there.jpg").write_bytes(b"secret")
    home = tmp_path / "home"
    (home / "photos" / "alice").mkdir(parents=True)
    (home / "photos" / "alice" / "there.jpg").write_bytes(b"secret")
    pairs = [
        (str(outside / "there.jpg"), str(outside / "absent.jpg")),
        ("../outside/there.jpg", "../outside/absent.jpg"),
        ("sub/../../outside/there.jpg", "sub/../../outside/absent.jpg"),
    ]
    for there, absent in pairs:
        reasons = [_reason(p, folder, None) for p in (there, absent)]
        assert reasons[0].replace("there", "absent") == reasons[1]
    around = tmp_path  # a folder holding the home: its photos are still refused, by text alone
    reasons = [_reason(f"home/photos/alice/{n}.jpg", around, home) for n in ("there", "absent")]
    assert reasons[0].replace("there", "absent") == reasons[1] and "rcmu data folder" in reasons[0]


def _reason(given: str, folder: Path, home: Path | None) -> str:
    with pytest.raises(RcmuError) as refused:
        read_photo(written_path(given), folder, max_bytes=1 << 20, home=home)
    return refused.value.problem


@pytest.mark.unit
def test_an_export_whose_manifest_or_entities_file_leaves_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_text(json.dumps({"user": "alice", "name": "Secret", "info": "alice's", "photos": []}) + "\n")
    cases = {
        "absolute": (str(outside), "is not a path relative to the folder"),
        "dotdot": ("../outside.jsonl", "leads out of the folder"),
        "linked": ("entities.jsonl", LINK),
        "hard": ("entities.jsonl", "has other hard links"),
    }
    for case, (entities, reason) in cases.items():
        folder = tmp_path / case
        folder.mkdir()
        manifest = {"format": "rcmu-memory", "version": 1, "users": {}, "entities": entities}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        if case == "linked":
            (folder / "entities.jsonl").symlink_to(outside)
        elif case == "hard":
            os.link(outside, folder / "entities.jsonl")
        with pytest.raises(InvalidInputError, match="export the memory again") as refused:
            read_source(folder)
        assert reason in refused.value.problem and "Secret" not in str(refused.value)
        if case == "hard":
            os.unlink(folder / "entities.jsonl")
    folder = tmp_path / "linked-manifest"
    folder.mkdir()
    (folder / "manifest.json").symlink_to(tmp_path / "dotdot" / "manifest.json")
    with pytest.raises(InvalidInputError, match=LINK.split(",")[0]):
        read_source(folder)
