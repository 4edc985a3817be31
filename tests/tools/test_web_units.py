"""The web app's rules without a browser: which folders a login may index, previews drawn on the upright
photo, and error fixes that point at the page rather than the CLI (whose uploads and files a login may
use: test_web_files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from rcmu_agent import Assistant
from rcmu_agent.door import Inbound
from rcmu_agent.errors import InvalidInputError, NotFoundError
from rcmu_agent.photos import PhotoAccess
from rcmu_agent.tools.web import _handlers as act
from rcmu_agent.tools.web._files import Taken
from rcmu_agent.tools.web._memory import act_draw
from rcmu_agent.tools.web._page import for_the_page


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """An allowed folder holding photos and the rcmu home (alice's references, the shared uploads)."""
    for folder in ("photos/trip", "home/photos/alice", "home/photos/bob", "home/web/uploads/abc"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "x.jpg").write_bytes(b"not checked here")
    (tmp_path / "photos" / "into-home").symlink_to(tmp_path / "home" / "photos" / "alice")
    return tmp_path


@pytest.mark.unit
def test_folders_inside_the_home_or_around_it_are_refused_like_any_outside_folder(tree: Path) -> None:
    home = tree / "home"
    bob = PhotoAccess(roots=[tree], home=home, own=home / "photos" / "bob")
    assert bob.folder(str(tree / "photos" / "trip")) == (tree / "photos" / "trip").resolve()
    assert bob.folder(home / "photos" / "bob") == (home / "photos" / "bob").resolve()  # his own references
    for folder in (
        home / "photos" / "alice",
        home / "web" / "uploads",
        home,
        tree / "photos" / "into-home",  # a symlink into the home
        f"{tree}/photos/../home/photos/alice",
        "/etc",
        "/proc/self",
        "",
    ):
        with pytest.raises(
            InvalidInputError, match=r"is outside the allowed folders — pick a folder inside them$"
        ) as caught:
            bob.folder(folder)
        assert "alice" not in caught.value.fix
    with pytest.raises(InvalidInputError, match="holds the rcmu data folder"):
        bob.folder(tree)  # indexing it would walk into the home
    with pytest.raises(NotFoundError, match="is not a folder here"):
        bob.folder(tree / "photos" / "trip" / "x.jpg")
    with pytest.raises(InvalidInputError, match="needs RCMU_ALLOWED_ROOTS"):
        act.allowed_folder(str(tree), PhotoAccess(home=home))


@pytest.mark.integration  # dlib finds the face
def test_reference_previews_are_drawn_on_the_upright_photo(
    tmp_path: Path, assistant: Assistant, faces_dir: Path
) -> None:
    """A phone photo stored on its side (EXIF orientation 6), checked from the vault as the page does:
    the face box, found on the upright photo, is drawn on the upright photo, not on the pixels as stored."""
    upright = faces_dir / "reference" / "obama_obama.jpg"
    with Image.open(upright) as img:
        stored = img.convert("RGB").rotate(90, expand=True)  # shown upright after a 90° clockwise turn
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = tmp_path / "sideways.jpg"
    stored.save(sideways, exif=exif, quality=95)

    def checked(photo: Path) -> act.Labelled:
        pid = assistant.parts.photos.ingest("carol", Inbound(photo.read_bytes(), name=photo.name))
        return act.check_reference(assistant, "carol", [Taken(pid, photo.name)], "person")[0][0]

    (image, boxes), (plain, plain_boxes) = (checked(p) for p in (sideways, upright))
    assert image.size == plain.size and image.width < image.height
    (x1, y1, x2, _), what = boxes[0]
    assert what == "this face" and all(abs(a - b) <= 3 for a, b in zip(boxes[0][0], plain_boxes[0][0], strict=True))

    drawn = act_draw(image, boxes)
    scale = drawn.width / image.width
    assert drawn.width < drawn.height
    edge = drawn.getpixel((round((x1 + x2) / 2 * scale), round(y1 * scale) + 1))
    assert edge[1] > 120 and edge[0] < 60 and edge[2] < 60, edge  # the green outline, on the face's top edge


@pytest.mark.unit
def test_error_fixes_point_at_the_page_not_the_cli() -> None:
    cluster = NotFoundError("there is no face cluster 9 for user 'bob'", "see `rcmu people`")
    faces = InvalidInputError("no face ids given", "see the face ids with `rcmu people --json`")
    empty = NotFoundError("the photo library of user 'bob' is empty", "index your photos first with `rcmu index DIR`")
    for error in (cluster, faces, empty):
        shown = for_the_page(str(error))
        assert "rcmu " not in shown and "Library tab" in shown, shown


@pytest.mark.unit
def test_errors_are_one_line_without_server_paths() -> None:
    from gradio.utils import get_upload_folder

    from rcmu_agent.tools.web._page import said

    upload = f"{get_upload_folder().rstrip('/')}/0123abcd/beach.jpg"
    error = InvalidInputError(f"{upload} is corrupt\nor truncated", "re-export   the photo")
    assert said(error) == "⚠ beach.jpg is corrupt or truncated — re-export the photo"
    assert said(KeyError("/srv/secret/path")) == (
        "⚠ something went wrong (KeyError) — try again; the server log has the details"
    )


@pytest.mark.unit
def test_cards_and_library_answers_are_escaped_and_boxed_in_the_photos_own_pixels(tmp_path: Path) -> None:
    from rcmu_agent.schema import Cluster, IndexReport, LibraryAnswer, PhotoCitation, SkippedFile
    from rcmu_agent.tools.web._page import count
    from rcmu_agent.tools.web._show import cluster_cards, index_summary, library_answer

    assert (count(1, "face"), count(0, "face"), count(2, "photo")) == ("1 face", "0 faces", "2 photos")
    crop = Image.new("RGB", (40, 40), (200, 150, 120))
    cards = cluster_cards([Cluster(id=7, size=1, faces=[3], crops=["c.jpg"], name="<b>Kit</b>")], lambda _: crop)
    assert "Cluster 7 — &lt;b&gt;Kit&lt;/b&gt;" in cards and "<p>1 face</p>" in cards and "face ids: 3" in cards
    assert 'src="data:image/jpeg;base64,' in cards and "c.jpg" not in cards  # pixels, never a path

    photo = Image.new("RGB", (1000, 500))
    cited = [
        PhotoCitation(
            index=2, photo_id="photo:ab", path=str(tmp_path / "trip" / "a.jpg"), box=(100, 50, 300, 250), name="Kit"
        ),
        PhotoCitation(
            index=2, photo_id="photo:ab", path=str(tmp_path / "trip" / "a.jpg"), box=(100, 50, 300, 250), name="Kit"
        ),
        PhotoCitation(index=1, photo_id="photo:ab", path=str(tmp_path / "trip" / "a.jpg"), name=None),
    ]
    answer = LibraryAnswer(text="Kit [2] was at the beach <script>[1]", photo_citations=cited)
    shown = library_answer(answer, lambda _: photo)
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert 'style="left:10.00%;top:10.00%;width:20.00%;height:40.00%"' in shown  # (100,50,300,250) of 1000x500
    assert shown.count('class="rcmu-cite"') == 2 and shown.count("<li>") == 2  # each cited region listed once
    assert "[2] Kit in a.jpg at (100, 50, 300, 250)" in shown and "[1] photo in a.jpg (the whole photo)" in shown
    assert str(tmp_path) not in shown

    skipped = SkippedFile(path=str(tmp_path / "trip" / "cut.jpg"), reason=f"{tmp_path}/trip/cut.jpg is corrupt")
    report = IndexReport(root=str(tmp_path), user="u", added=1, photos=1, faces=1, skipped=[skipped])
    summary = index_summary(report, tmp_path)
    assert summary.startswith("1 photo indexed (1 new photo, 0 unchanged, 1 skipped), 1 face found")
    assert "skipped **trip/cut.jpg**: trip/cut.jpg is corrupt" in summary and str(tmp_path) not in summary


@pytest.mark.unit
def test_a_proposal_card_is_escaped_and_lists_only_the_unrecognised_regions() -> None:
    from rcmu_agent.schema import Answer, ContextEntry, MemoryChange, Region
    from rcmu_agent.tools.web._teach import proposal_card, unknown_choices

    change = MemoryChange(
        action="remember", name="<img src=x onerror=alert(1)>", category="person", info='my "sister" & friend',
        region=2, box=(10.4, 20.6, 110, 220), thumbnail="data:image/jpeg;base64,AAAA",
    )  # fmt: skip
    card = proposal_card(change)
    assert "<img src=x" not in card and "&lt;img src=x onerror=alert(1)&gt;" in card
    assert "my &quot;sister&quot; &amp; friend" in card and "region [2]" in card and "(10, 21, 110, 220)" in card
    assert 'src="data:image/jpeg;base64,AAAA"' in card and card.count("<img") == 1  # the crop, with its alt text
    assert "Forget " in proposal_card(change.model_copy(update={"action": "forget", "thumbnail": None}))

    known = ContextEntry(region=Region(box=(0, 0, 9, 9)), index=1, name="Kit", info="a friend")
    unknown = ContextEntry(region=Region(box=(20, 0, 29, 9), category="person"), index=2)
    dog = ContextEntry(region=Region(box=(40, 0, 49, 9), category="dog"), index=3)
    answer = Answer(text="", regions=[known, unknown, dog])
    assert unknown_choices(answer) == [("[2] unknown person", 2), ("[3] unknown dog", 3)]
