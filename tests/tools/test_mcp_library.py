"""`search_photos` and user separation through `rcmu mcp` as a subprocess: alice and bob each have a
memory and an indexed library on one home (taught in process before the server starts); searches
come back as `{"photos": [...]}` without a path of the server's disk, and over streamable HTTP no
tool shows one user the other's people or photos, with a tokens file or the single `--token`."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rcmu_agent import Assistant, Settings
from rcmu_agent.testing import Reply, serve
from tests.tools.test_mcp import _env, _http_server, http_session, stdio_session

pytestmark = pytest.mark.integration  # MCP servers as subprocesses over a real Chroma, dlib and SQLite home

ALICE_INFO = {"Barack Obama": "alice-knows-obama-from-law-school", "Joe Biden": "alice-knows-biden-from-delaware"}
BOB_INFO = "bob-knows-kit-from-the-theatre"
ALICE_FILES, BOB_FILES = {"two_people.jpg", "obama1.jpg"}, {"kit_on_stage.jpeg"}


def _teach(root: Path, faces_dir: Path) -> None:
    """alice: Obama and Biden, a library of two scenes; bob: Kit Harington, a library of one photo."""
    ref, scenes = faces_dir / "reference", faces_dir / "scenes"
    teacher = Assistant(Settings(home=root / "rcmu", object_detector=None, image_embedding_model=None))
    for name, info in ALICE_INFO.items():
        photo = ref / ("obama_obama.jpg" if name == "Barack Obama" else "biden_biden.jpg")
        teacher.remember(name, info=info, photos=[photo], user="alice")
    teacher.remember("Kit Harington", info=BOB_INFO, photos=[ref / "kit_harington_john1.jpeg"], user="bob")
    libraries = {"alice": root / "photos" / "alice", "bob": root / "photos" / "bob"}
    for folder in libraries.values():
        folder.mkdir(parents=True)
    for name in ALICE_FILES:
        shutil.copy(scenes / name, libraries["alice"] / name)
    shutil.copy(ref / "kit_harington_john2.jpeg", libraries["bob"] / "kit_on_stage.jpeg")
    for user, folder in libraries.items():
        report = teacher.index_library(folder, user=user)
        assert report.added == len(list(folder.iterdir())) and not report.skipped, report


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """One home for the module's servers (they only read it): teaching and indexing cost seconds."""
    root = tmp_path_factory.mktemp("mcp-library")
    _teach(root, faces_dir)
    return root


def _files(result: Any) -> set[str]:
    photos = result.structured_content["photos"]
    assert all("path" not in p and "paths" not in p for p in photos)  # the server's disk stays there
    return {p["file"] for p in photos}


def test_search_photos_over_stdio_by_person_text_and_question(taught: Path, shared_data: Path) -> None:
    tmp_path, libraries = taught, {"alice": taught / "photos" / "alice"}
    replies: list[Any] = []

    async def session(url: str) -> None:
        env = _env(tmp_path, shared_data, RCMU_USER="alice", RCMU_BACKEND="openai", RCMU_BASE_URL=url, RCMU_MODEL="m")
        env["RCMU_ALLOWED_ROOTS"] = str(tmp_path / "photos")  # the indexed folders lie inside the allowed root
        async with stdio_session(env, tmp_path / "stdout.jsonl") as client:
            tool = next(t for t in (await client.list_tools()).tools if t.name == "search_photos")
            assert "photos" in tool.output_schema["required"]

            obama = await client.call_tool("search_photos", {"people": ["Barack Obama"]})
            assert not obama.is_error, obama.content
            assert _files(obama) == ALICE_FILES
            both = await client.call_tool("search_photos", {"people": ["Barack Obama", "Joe Biden"]})
            assert _files(both) == {"two_people.jpg"}
            (hit,) = both.structured_content["photos"]
            matched = [hit["regions"][i]["info"] for i in hit["matched_regions"]]
            assert matched == ["Barack Obama", "Joe Biden"]
            assert both.content[0].text.startswith("1 photo(s):\n1. two_people.jpg — people: Barack Obama, Joe Biden")

            by_text = await client.call_tool("search_photos", {"text": "Joe Biden", "limit": 1})
            assert not by_text.is_error, by_text.content
            assert _files(by_text) == {"two_people.jpg"}

            asked = await client.call_tool("search_photos", {"question": "Who was with Joe Biden?", "limit": 2})
            assert not asked.is_error, asked.content
            structured = asked.structured_content
            assert structured["answer"] == "Barack Obama [1] was there."
            assert _files(asked) <= ALICE_FILES
            cited = structured["photo_citations"]
            assert cited and all("path" not in c and c["file"] in ALICE_FILES for c in cited)
            replies.extend([obama, both, by_text, asked])

    with serve() as model:
        model.default = Reply(text="Barack Obama [1] was there.")
        asyncio.run(session(model.url))
    blob = json.dumps([[r.structured_content, [c.model_dump() for c in r.content]] for r in replies])
    assert str(tmp_path) not in blob and str(libraries["alice"]) not in blob  # no server path, anywhere


@pytest.fixture()
def two_users(taught: Path, shared_data: Path) -> Iterator[str]:
    with serve() as model:
        model.default = Reply(text="I cannot tell from the information given.")
        yield from _http_server(taught, shared_data, model.url)


def test_over_http_no_tool_shows_one_user_the_others_people_or_photos(two_users: str, faces_dir: Path) -> None:
    scene, kit = faces_dir / "scenes" / "two_people.jpg", faces_dir / "reference" / "kit_harington_john1.jpeg"

    async def calls(token: str, photo: Path, other: str) -> list[Any]:
        """The photo tools on the other user's person, and searches that would find the other's photos."""
        async with http_session(two_users, token) as client:
            results = [
                await client.call_tool("ask_about_photo", {"photo": str(photo), "question": "Who is this?"}),
                await client.call_tool("describe_photo", {"photo": str(photo)}),
                await client.call_tool("search_photos", {"text": "people together", "limit": 10}),
                await client.call_tool("search_photos", {"question": "Who is in these photos?"}),
            ]
            refused = await client.call_tool("search_photos", {"people": [other]})
            assert refused.is_error and " — " in refused.content[0].text  # not a person of this user's
            return results

    bob = asyncio.run(calls("bob-token", scene, "Barack Obama"))
    alice = asyncio.run(calls("alice-token", kit, "Kit Harington"))
    for seen, own_files, others in (
        (bob, BOB_FILES, [*ALICE_INFO, *ALICE_INFO.values(), *ALICE_FILES]),
        (alice, ALICE_FILES, ["Kit Harington", BOB_INFO, *BOB_FILES]),
    ):
        asked, described, searched, question = seen
        for result in (asked, described):
            assert not result.is_error, result.content
            assert result.structured_content["regions"] and all(
                r["name"] is None for r in result.structured_content["regions"]
            )  # faces found, nobody recognised: the other user's people are not this user's
        assert _files(searched) == own_files and _files(question) <= own_files
        blob = json.dumps(
            [[r.structured_content, [c.model_dump() for c in r.content if c.type == "text"]] for r in seen]
        )
        leaked = [word for word in others if word in blob]
        assert not leaked, leaked


def test_http_with_a_single_token_serves_its_user_only(tmp_path: Path, shared_data: Path, faces_dir: Path) -> None:
    """`--token T --user carol`: T is carol, every other bearer (another user's included) is refused."""
    import httpx

    home = Assistant(Settings(home=tmp_path / "rcmu", object_detector=None, image_embedding_model=None))
    ref = faces_dir / "reference"
    home.remember("Joe Biden", info="carol's neighbour", photos=[ref / "biden_biden.jpg"], user="carol")
    home.remember("Barack Obama", info="alice's friend", photos=[ref / "obama_obama.jpg"], user="alice")
    auth = ["--token", "carol-token", "--user", "carol"]
    with serve() as model:
        model.default = Reply(text="Joe Biden [1].")
        for url in _http_server(tmp_path, shared_data, model.url, auth):
            hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            for headers in ({}, {"Authorization": "Bearer alice-token"}, {"Authorization": "Bearer carol"}):
                assert httpx.post(url, json=hello, headers=headers, timeout=10).status_code == 401

            async def run(url: str = url) -> None:
                async with http_session(url, "carol-token") as carol:
                    people = (await carol.call_tool("list_people", {})).structured_content["people"]
                    assert [(p["name"], p["info"]) for p in people] == [("Joe Biden", "carol's neighbour")]
                    listed = [r.name for r in (await carol.list_resources()).resources]
                    assert "Barack Obama" not in listed and "Joe Biden" in listed
                    scene = str(faces_dir / "scenes" / "two_people.jpg")
                    asked = await carol.call_tool("ask_about_photo", {"photo": scene, "question": "Who?"})
                    names = {r["name"] for r in asked.structured_content["regions"]}
                    assert names == {"Joe Biden", None}  # Obama is alice's, not carol's

            asyncio.run(run())
