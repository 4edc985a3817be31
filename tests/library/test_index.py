"""`rcmu index` for real: a messy library built from the shared photos (copies, renames, a duplicate,
a corrupt file, a non-image, a huge image, symlink loops and escapes), indexed with real dlib and real
Chroma; then re-indexed, edited, searched, named — and killed mid-run and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _library_helpers import copy, mirrored, settings, with_exif
from PIL import Image

from rcmu_agent import Assistant
from rcmu_agent.errors import MemoryLockedError, NotFoundError

pytestmark = pytest.mark.integration  # dlib, MiniLM, Chroma, killed subprocesses


class CountingDetector:
    """The real dlib detector, counting its calls (re-indexing must not make any)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def detect(self, image: Any) -> Any:
        self.calls += 1
        return self.inner.detect(image)


def names(hits: Any) -> set[str]:
    return {Path(p).name for h in hits for p in h.paths}


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> SimpleNamespace:
    root, home = tmp_path_factory.mktemp("photos"), tmp_path_factory.mktemp("home")
    ref, scenes = faces_dir / "reference", faces_dir / "scenes"
    with_exif(
        scenes / "two_people.jpg", root / "2024 trip" / "two_people.jpg", datetime(2024, 5, 1, 10), (48.8584, 2.2945)
    )
    copy(root / "2024 trip" / "two_people.jpg", root / "2024 trip" / "copy of two_people.jpg")
    with_exif(scenes / "obama1.jpg", root / "obama1.jpg", datetime(2023, 1, 15, 9, 30))
    copy(scenes / "alex_lacamoire1.jpg", root / "misc" / "alex.jpg")  # its own EXIF says 2016-05-04
    with_exif(ref / "rose_leslie_img1.jpg", root / "friends" / "rose_a.jpg", datetime(2024, 6, 10, 18))
    with_exif(ref / "rose_leslie_img2.jpg", root / "friends" / "rose_b.jpg", datetime(2024, 6, 11, 18))
    copy(ref / "kit_harington_john1.jpeg", root / "friends" / "kit_1.jpeg")
    copy(ref / "kit_harington_john2.jpeg", root / "friends" / "kit_2.jpeg")
    data = (scenes / "obama1.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.jpg").write_text("not a photo at all")
    (root / "readme.txt").write_text("holiday photos")
    Image.new("1", (6000, 6000)).save(root / "huge.png")  # 36 MP, over the 30 MP limit below
    (root / "loop").symlink_to(root)
    (root / "self.jpg").symlink_to(root / "self.jpg")
    (root / "outside.jpg").symlink_to(ref / "obama_obama.jpg")
    # one process: the counting detector below must be the one that runs (test_index_workers.py covers the pool)
    assistant = Assistant(settings(home, max_image_pixels=30_000_000, library_workers=1))
    assistant.remember("Obama", info="Barack Obama, 44th US president", photos=[ref / "obama_obama.jpg"])
    assistant.remember("Biden", info="Joe Biden, 46th US president", photos=[ref / "biden_biden.jpg"])
    counter = CountingDetector(assistant.parts.recognizer.face_detector)
    assistant.parts.recognizer.__dict__["face_detector"] = counter
    first = assistant.index_library(root)
    return SimpleNamespace(root=root, home=home, a=assistant, counter=counter, first=first, ref=ref)


def test_first_index_adds_each_content_once_and_lists_what_it_skipped(lib: SimpleNamespace) -> None:
    r = lib.first
    assert (r.added, r.duplicates, r.unchanged, r.moved, r.removed, r.photos) == (7, 1, 0, 0, 0, 7)
    assert lib.counter.calls == 7 and lib.a.library.indexer.decodes == 7
    reasons = {Path(s.path).name: s.reason for s in r.skipped}
    assert set(reasons) == {"broken.jpg", "notes.jpg", "readme.txt", "huge.png", "loop", "self.jpg", "outside.jpg"}
    assert "corrupt or truncated" in reasons["broken.jpg"]
    assert "not an image" in reasons["notes.jpg"]
    assert "not a photo file type" in reasons["readme.txt"]
    assert reasons["huge.png"] == "huge.png is 6000x6000 (36 MP), over the 30 MP limit"
    assert "symlink loop" in reasons["loop"] and "symlink loop" in reasons["self.jpg"]
    assert "outside the library" in reasons["outside.jpg"]


def test_reindex_reads_and_decodes_nothing(lib: SimpleNamespace) -> None:
    (lib.root / "obama1.jpg").touch()  # a new mtime, same bytes: hashed, not decoded
    r = lib.a.index_library(lib.root)
    assert (r.added, r.unchanged, r.moved, r.duplicates, r.removed, r.photos) == (0, 8, 0, 0, 0, 7)
    assert {Path(s.path).name for s in r.skipped} == {Path(s.path).name for s in lib.first.skipped}
    assert lib.counter.calls == 7 and lib.a.library.indexer.decodes == 7  # the corrupt file was not read again either


def test_search_by_person_pairs_gives_exact_sets(lib: SimpleNamespace) -> None:
    both = lib.a.search_photos(people=["Obama", "Biden"])
    assert names(both) == {"two_people.jpg", "copy of two_people.jpg"} and len(both) == 1
    (hit,) = both
    cited = [hit.regions[i] for i in hit.matched_regions]
    assert sorted(r.info for r in cited) == ["Biden", "Obama"]
    obama = next(r for r in cited if r.info == "Obama")
    assert obama.box[0] < 500 < next(r for r in cited if r.info == "Biden").box[0]  # Obama left, Biden right
    assert names(lib.a.search_photos(people=["Obama"])) == {"two_people.jpg", "copy of two_people.jpg", "obama1.jpg"}
    assert names(lib.a.search_photos(people=["biden"])) == {"two_people.jpg", "copy of two_people.jpg"}
    with pytest.raises(NotFoundError, match=r"nobody called 'Zelda'.*known: Biden, Obama"):
        lib.a.search_photos(people=["Zelda"])


def test_clusters_named_by_the_user_search_and_recognise_later_photos(lib: SimpleNamespace) -> None:
    clusters = lib.a.people()
    by_photos = {frozenset(Path(p).name for p in c.sample_paths): c for c in clusters}
    assert set(by_photos) == {frozenset({"rose_a.jpg", "rose_b.jpg"}), frozenset({"kit_1.jpeg", "kit_2.jpeg"}),
                              frozenset({"alex.jpg"})}  # fmt: skip
    rose = by_photos[frozenset({"rose_a.jpg", "rose_b.jpg"})]
    assert rose.size == 2 and len(rose.crops) == 2
    for crop in rose.crops:
        assert Path(crop).is_relative_to(lib.home / "library" / "crops")
        with Image.open(crop) as img:
            assert img.format == "JPEG" and img.width > 50
    named = lib.a.name_cluster(rose.id, "Rose")
    assert named.name == "Rose" and named.size == 2
    assert names(lib.a.search_photos(people=["Rose"])) == {"rose_a.jpg", "rose_b.jpg"}
    assert rose.id not in {c.id for c in lib.a.people()}
    assert any(c.id == rose.id and c.name == "Rose" for c in lib.a.people(include_named=True))
    kit = by_photos[frozenset({"kit_1.jpeg", "kit_2.jpeg"})]
    lib.a.name_cluster(kit.id, "Kit")
    assert lib.a.search_photos(people=["Rose", "Kit"]) == []  # never photographed together

    mirrored(lib.ref / "rose_leslie_img1.jpg", lib.root / "later" / "rose_mirror.jpg")
    r = lib.a.index_library(lib.root)
    assert r.added == 1 and lib.counter.calls == 8
    assert names(lib.a.search_photos(people=["Rose"])) == {"rose_a.jpg", "rose_b.jpg", "rose_mirror.jpg"}
    assert all("rose_mirror.jpg" not in " ".join(c.sample_paths) for c in lib.a.people())

    # a guess never overrides the user's name: teaching the same face as someone else leaves "Kit"
    lib.a.remember("Jon Snow", info="a character", photos=[lib.ref / "kit_harington_john1.jpeg"])
    assert names(lib.a.search_photos(people=["Kit"])) == {"kit_1.jpeg", "kit_2.jpeg"}
    assert lib.a.search_photos(people=["Jon Snow"]) == []


def test_text_and_date_filters_combine(lib: SimpleNamespace) -> None:
    trip = lib.a.search_photos(text="trip")
    assert names(trip[:1]) == {"two_people.jpg", "copy of two_people.jpg"}
    (hit,) = lib.a.search_photos(people=["Obama"], since=date(2024, 1, 1))
    assert hit.taken_at == datetime(2024, 5, 1, 10) and hit.place is not None
    assert (hit.place.lat, hit.place.lon) == pytest.approx((48.8584, 2.2945), abs=1e-3)
    in_2024 = lib.a.search_photos(since=date(2024, 1, 1), until=date(2024, 12, 31))
    assert names(in_2024) == {"two_people.jpg", "copy of two_people.jpg", "rose_a.jpg", "rose_b.jpg"}
    assert [h.taken_at for h in in_2024] == sorted((h.taken_at for h in in_2024), reverse=True)  # newest first
    assert names(lib.a.search_photos(until=date(2023, 12, 31))) == {"obama1.jpg", "alex.jpg"}
    assert names(lib.a.search_photos(since=date(2024, 6, 10), until=date(2024, 6, 10))) == {"rose_a.jpg"}
    rose_june = lib.a.search_photos(people=["Rose"], text="friends", since=datetime(2024, 6, 11))
    assert names(rose_june) == {"rose_b.jpg"} and rose_june[0].score > 0


def test_moved_file_is_recognised_and_deleted_files_removed(lib: SimpleNamespace) -> None:
    decodes = lib.a.library.indexer.decodes
    (lib.root / "moved").mkdir()
    (lib.root / "misc" / "alex.jpg").rename(lib.root / "moved" / "alex_renamed.jpg")
    r = lib.a.index_library(lib.root)
    assert (r.added, r.moved, r.removed) == (0, 1, 0) and lib.a.library.indexer.decodes == decodes
    (alex,) = [c for c in lib.a.people() if "alex" in " ".join(c.sample_paths)]
    assert [Path(p).name for p in alex.sample_paths] == ["alex_renamed.jpg"]

    (lib.root / "obama1.jpg").unlink()
    (lib.root / "2024 trip" / "copy of two_people.jpg").unlink()
    r = lib.a.index_library(lib.root)
    assert (r.added, r.moved, r.removed, r.photos) == (0, 0, 2, 7)  # the duplicate's content is still there
    assert names(lib.a.search_photos(people=["Obama"])) == {"two_people.jpg"}
    assert lib.a.library.indexer.decodes == decodes


KILLER = """
import os, signal, sys
from rcmu_agent import Assistant, Settings
assistant = Assistant(Settings(home=sys.argv[1], object_detector="", image_embedding_model=""))
def progress(done, total):
    if done == 3:
        os.kill(os.getpid(), signal.SIGKILL)
assistant.index_library(sys.argv[2], progress=progress)
"""


def test_killed_index_keeps_what_it_finished_and_resumes(tmp_path: Path, faces_dir: Path) -> None:
    root, home = tmp_path / "photos", tmp_path / "home"
    for photo in sorted((faces_dir / "reference").glob("*"))[:5]:
        copy(photo, root / photo.name)
    killed = subprocess.run([sys.executable, "-c", KILLER, str(home), str(root)], cwd=tmp_path, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assistant = Assistant(settings(home))
    r = assistant.index_library(root)
    assert (r.added, r.unchanged, r.photos) == (2, 3, 5) and assistant.library.indexer.decodes == 2
    assert len(assistant.search_photos(limit=50)) == 5


HOLDER = """
import sys, time
from rcmu_agent import Settings
from rcmu_agent.parts import Parts
with Parts(Settings(home=sys.argv[1])).library.store.lock():
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_index_waits_then_names_the_running_one(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "photos"
    root.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(MemoryLockedError, match=rf"an index .* is running \(pid {holder.pid}\)"):
            Assistant(settings(home, lock_timeout=1.0)).index_library(root)
        assert time.monotonic() - started >= 1.0
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert Assistant(settings(home, lock_timeout=1.0)).index_library(root).photos == 0
