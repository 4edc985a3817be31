"""The photo library on a shared deployment: its tables in PostgreSQL, its vectors on a Chroma server,
its index lock PostgreSQL's advisory lock. Two replicas are two homes that share no disk (each starts
empty): a folder of real photos indexed through one is searched, clustered and named through the
other; a replica killed mid-index leaves every photo it finished and no lock behind (real PostgreSQL,
real `chroma run`, real dlib and MiniLM)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from _library_helpers import copy, settings, with_exif
from PIL import Image

from rcmu_agent import Assistant
from rcmu_agent.errors import MemoryLockedError, NotFoundError
from rcmu_agent.memory.library._pg import pg_sql
from rcmu_agent.memory.library._sql import checked_sql


def names(hits: Any) -> set[str]:
    return {Path(p).name for h in hits for p in h.paths}


def build(root: Path, faces_dir: Path) -> None:
    ref, scenes = faces_dir / "reference", faces_dir / "scenes"
    with_exif(
        scenes / "two_people.jpg", root / "2024 trip" / "two_people.jpg", datetime(2024, 5, 1, 10), (48.8584, 2.2945)
    )
    with_exif(scenes / "obama1.jpg", root / "obama1.jpg", datetime(2023, 1, 15, 9, 30))
    with_exif(ref / "rose_leslie_img1.jpg", root / "friends" / "rose_a.jpg", datetime(2024, 6, 10, 18))
    with_exif(ref / "rose_leslie_img2.jpg", root / "friends" / "rose_b.jpg", datetime(2024, 6, 11, 18))
    copy(ref / "kit_harington_john1.jpeg", root / "friends" / "kit_1.jpeg")
    copy(ref / "kit_harington_john2.jpeg", root / "friends" / "kit_2.jpeg")
    (root / "broken.jpg").write_bytes((scenes / "obama1.jpg").read_bytes()[:2000])


def replica(home: Path, postgres_url: str, chroma_url: str, **extra: Any) -> Assistant:
    """One server replica: its own (empty) home, the deployment's database and Chroma server."""
    return Assistant(settings(home, database_url=postgres_url, chroma_url=chroma_url, library_workers=1, **extra))


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.integration
def test_a_library_indexed_through_one_replica_is_searched_clustered_and_named_through_another(
    tmp_path: Path, faces_dir: Path, postgres_url: str, chroma_server: str
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # another application's tables of the same names
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, caption TEXT)")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('version', 'not the library''s')")
    root = tmp_path / "photos"
    build(root, faces_dir)
    a = replica(tmp_path / "a", postgres_url, chroma_server)
    a.remember(
        "Barack Obama", info="44th president", photos=[faces_dir / "reference" / "obama_obama.jpg"], user="alice"
    )
    a.remember("Joe Biden", info="46th president", photos=[faces_dir / "reference" / "biden_biden.jpg"], user="alice")
    report = a.index_library(root, user="alice")
    assert (report.added, report.photos, len(report.skipped)) == (6, 6, 1)

    b = replica(tmp_path / "b", postgres_url, chroma_server)
    for person, expected in (("Barack Obama", {"two_people.jpg", "obama1.jpg"}), ("Biden", {"two_people.jpg"})):
        through_a, through_b = (r.search_photos(people=[person], user="alice") for r in (a, b))
        assert names(through_b) == names(through_a) == expected
        assert [h.model_dump() for h in through_b] == [h.model_dump() for h in through_a]
    (both,) = b.search_photos(people=["Obama", "Biden"], user="alice")
    assert sorted(both.regions[i].info for i in both.matched_regions) == ["Barack Obama", "Joe Biden"]
    assert names(b.search_photos(text="trip", user="alice")[:1]) == {"two_people.jpg"}
    in_2024 = b.search_photos(since=date(2024, 1, 1), until=date(2024, 12, 31), user="alice")
    assert [Path(h.path).name for h in in_2024] == ["rose_b.jpg", "rose_a.jpg", "two_people.jpg"]  # newest first
    (paris,) = b.search_photos(people=["Obama"], since=date(2024, 1, 1), user="alice")
    assert paris.place is not None and (paris.place.lat, paris.place.lon) == pytest.approx((48.8584, 2.2945), abs=1e-3)

    clusters = b.people(user="alice")
    assert [(c.id, c.faces) for c in clusters] == [(c.id, c.faces) for c in a.people(user="alice")]
    by_photos = {frozenset(Path(p).name for p in c.sample_paths): c for c in clusters}
    assert set(by_photos) == {frozenset({"rose_a.jpg", "rose_b.jpg"}), frozenset({"kit_1.jpeg", "kit_2.jpeg"})}
    rose = by_photos[frozenset({"rose_a.jpg", "rose_b.jpg"})]
    for crop in rose.crops:  # a cache on B's own disk, made from the photos the shared rows name
        assert Path(crop).is_relative_to(tmp_path / "b" / "library" / "cache")
        with Image.open(crop) as img:
            assert img.format == "JPEG" and img.width > 50
    assert b.name_cluster(rose.id, "Rose Leslie", user="alice").size == 2
    assert names(a.search_photos(people=["Rose"], user="alice")) == {"rose_a.jpg", "rose_b.jpg"}
    assert [c.id for c in a.people(user="alice")] == [by_photos[frozenset({"kit_1.jpeg", "kit_2.jpeg"})].id]
    assert any(c.name == "Rose Leslie" for c in a.people(user="alice", include_named=True))
    kit = by_photos[frozenset({"kit_1.jpeg", "kit_2.jpeg"})]
    moved = a.split_cluster(kit.id, kit.faces[1:], user="alice")  # a new cluster id from the shared database
    assert moved.id not in {c.id for c in clusters} and moved.faces == kit.faces[1:]
    assert sorted(c.size for c in b.people(user="alice")) == [1, 1]
    assert b.merge_clusters([kit.id, moved.id], user="alice").faces == kit.faces

    # bob, on either replica, sees none of it
    for r in (a, b):
        assert r.search_photos(user="bob", limit=100) == [] and r.people(user="bob", include_named=True) == []
        assert r.search_photos(text="Obama in Paris", user="bob") == []
        with pytest.raises(NotFoundError, match="nobody called 'Obama'"):
            r.search_photos(people=["Obama"], user="bob")

    # nothing B needed was on either home's disk: no sidecar, no lock file, only B's crop cache
    for home in (tmp_path / "a", tmp_path / "b"):
        assert all(f.startswith("cache/crops/alice/") for f in files_under(home / "library")), files_under(home)
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b" / "library")
    fresh = replica(tmp_path / "c", postgres_url, chroma_server)
    assert names(fresh.search_photos(people=["Rose Leslie"], user="alice")) == {"rose_a.jpg", "rose_b.jpg"}
    assert [len(c.crops) for c in b.people(user="alice")] == [2]  # B's crops made again
    again = fresh.index_library(root, user="alice")  # the other replica's index: nothing to read again
    assert (again.added, again.unchanged, again.photos) == (0, 6, 6)
    exported = fresh.export_memory(tmp_path / "out", user="alice", library=True)  # the shared tables, exported
    assert exported.library_photos == 6
    lines = [json.loads(line) for line in (tmp_path / "out" / "library.jsonl").read_text().splitlines()]
    shown = {Path(p).name for line in lines for p in line["paths"]}
    assert len(lines) == 6 and shown >= {"two_people.jpg", "obama1.jpg", "rose_a.jpg", "rose_b.jpg"}
    assert {r["name"] for line in lines for r in line["regions"]} >= {"Rose Leslie"}
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM public.meta").fetchall() == [("not the library's",)]
        assert conn.execute("SELECT count(*) FROM rcmu_library.photos").fetchone() == (6,)


KILLER = """
import os, signal, sys
from rcmu_agent import Assistant, Settings
assistant = Assistant(Settings(home=sys.argv[1], database_url=sys.argv[3], chroma_url=sys.argv[4],
                               object_detector="", image_embedding_model="", library_workers=1))
def progress(done, total):
    print(done, flush=True)
    if done == 3:
        os.kill(os.getpid(), signal.SIGKILL)
assistant.index_library(sys.argv[2], user="alice", progress=progress)
"""


@pytest.mark.integration
def test_an_index_killed_on_one_replica_keeps_every_finished_photo_and_no_lock(
    tmp_path: Path, faces_dir: Path, postgres_url: str, chroma_server: str
) -> None:
    root = tmp_path / "photos"
    for photo in sorted((faces_dir / "reference").glob("*"))[:5]:
        copy(photo, root / photo.name)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path / "a"), str(root), postgres_url, chroma_server],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert killed.stdout.split() == ["1", "2", "3"]
    b = replica(tmp_path / "b", postgres_url, chroma_server, lock_timeout=0.5)
    assert len(b.search_photos(user="alice", limit=50)) == 3  # the finished photos, searchable at once
    started = time.monotonic()
    r = b.index_library(root, user="alice")  # the killed replica's lock died with it: no wait
    assert (r.added, r.unchanged, r.photos) == (2, 3, 5) and b.library.indexer.decodes == 2
    assert r.seconds < 60 and time.monotonic() - started < 60
    assert len(b.search_photos(user="alice", limit=50)) == 5
    pending = b.library.store.db.rows('SELECT COUNT(*) AS n FROM photos WHERE "user"=? AND embedded=0', ("alice",))
    assert pending[0]["n"] == 0  # every text vector written
    assert len(b.library.store.col("library_text").get(where={"user": "alice"})["ids"]) == 5


HOLDER = """
import sys, time
from rcmu_agent import Settings
from rcmu_agent.parts import Parts
with Parts(Settings(home=sys.argv[1], database_url=sys.argv[2])).library.store.lock():
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.integration
def test_a_second_indexer_on_another_replica_waits_then_says_who_runs(
    tmp_path: Path, postgres_url: str, chroma_server: str
) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "a"), postgres_url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        b = replica(tmp_path / "b", postgres_url, chroma_server, lock_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(
            MemoryLockedError, match=rf"an index of the shared photo library is running \(pid {holder.pid}\)"
        ):
            b.index_library(root, user="alice")
        assert time.monotonic() - started >= 1.0
        db = b.library.store.db  # as a holder on another machine writes itself down
        with db.transaction() as conn:
            db.set_meta(conn, "", "index_holder", f"{holder.pid}@replica-elsewhere")
        with pytest.raises(MemoryLockedError, match=rf"\(pid {holder.pid} on another replica\) — wait for it"):
            b.index_library(root, user="alice")
        assert b.search_photos(user="alice") == []  # readers are never held back
        assert not (tmp_path / "b" / "library").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert b.index_library(root, user="alice").photos == 0  # the holder's lock ended with its process

    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # a database restart, as a replica sees it
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    copy(Path(__file__).parents[1] / "data" / "two_people.jpg", root / "two_people.jpg")
    assert b.index_library(root, user="alice").added == 1  # its connection opened again
    (hit,) = b.search_photos(user="alice")
    assert len(hit.regions) == 2


@pytest.mark.unit
def test_library_sql_never_names_the_user_column_unquoted() -> None:
    """Unquoted, PostgreSQL reads `user` as CURRENT_USER: `WHERE user=?` would compare the login."""
    assert pg_sql('SELECT * FROM photos WHERE "user"=? AND id IN (?, ?)') == (
        'SELECT * FROM photos WHERE "user"=%s AND id IN (%s, %s)'
    )
    assert pg_sql("UPDATE regions SET named_by='user' WHERE \"user\"=? AND name LIKE '5%'").endswith("LIKE '5%%'")
    for bad in (
        "SELECT * FROM photos WHERE user=?",
        "SELECT r.user FROM regions r",
        "INSERT INTO clusters (user) VALUES (?)",
    ):
        with pytest.raises(ValueError, match="unquoted"):
            checked_sql(bad)
