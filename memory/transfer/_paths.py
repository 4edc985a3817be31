"""Where an import may read a file: inside the folder of the file that names it, and nowhere else.

An export folder or a knowledge base is data someone else may have written, so the paths in it are
untrusted: an absolute path, a `..`, a symlink or a hard link inside the folder once copied another
user's stored reference photo (`RCMU_HOME/photos/<user>/...`) into the importing user's memory. A path
named by such a file must therefore be

1. relative, with no `..` segment and not in the rcmu data folder — decided by its text alone, so a
   refusal says nothing about what exists outside the folder;
2. free of symlinks on the way: every component under the folder is `lstat`ed, none followed (a link
   to a file outside, to a file inside and a linked folder are all refused: the folder must hold the
   file itself);
3. read once through the door (`rcmu_agent.door.read_photo_file`) with the folder as the only root,
   the data folder denied and `single_link`: the door checks the descriptor it opened, so a link
   swapped in after step 2 still cannot lead out, and a hard link (the one way a file inside the
   folder can be another user's photo) is refused.

The bytes then go on (to the workers, to the store); nothing opens the path again. Every reason names
the path as written in the file, so `FILE:LINE: reason` points at what to fix.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath

from rcmu_agent.door import normal_path, read_photo_file, shown_path
from rcmu_agent.errors import InvalidInputError, NotFoundError

__all__ = ["Photo", "check_inside", "check_single", "read_photo", "written_path"]

_HINT = "use a path relative to the folder of the file naming it, with no '..', and copy the photo in (no links)"


@dataclass(frozen=True)
class Photo:
    """One photo's bytes as read through the door, and how messages name it (the path as written)."""

    data: bytes
    suffix: str
    label: str


def written_path(text: str) -> Path:
    """A photo path as a file wrote it: stripped, `file://` dropped, nothing expanded or resolved
    (an expanded `~` or a joined absolute path would hide what `check_inside` must refuse)."""
    return Path(text.strip().removeprefix("file://"))


def check_inside(folder: Path, given: PurePath, *, home: Path | None = None, what: str = "photo") -> Path:
    """`folder / given` once `given` is relative, has no `..`, lies outside `home` and no symlink is on
    its way (steps 1 and 2 of the module doc); else InvalidInputError (NotFoundError for a missing file
    inside the folder) naming `given` only."""
    shown = f"{what} {shown_path(str(given))}"
    if given.is_absolute() or (given.parts and given.parts[0].startswith("~")):
        raise InvalidInputError(f"{shown} is not a path relative to the folder", _HINT)
    if ".." in given.parts:
        raise InvalidInputError(f"{shown} leads out of the folder ('..')", _HINT)
    try:
        folder = normal_path(os.fspath(folder))
        in_home = home is not None and _in_home(folder, given, home)
    except (ValueError, OSError):  # a NUL byte, a name over the length limit
        raise InvalidInputError(f"{shown} is not a readable {what}", "check the path") from None
    if in_home:
        raise InvalidInputError(
            f"{shown} is in the rcmu data folder", "import from a folder outside RCMU_HOME, holding copies"
        )
    here = folder
    for part in given.parts:  # inside the folder only: nothing outside it is looked at
        here = here / part
        if stat.S_ISLNK(_lstat(here, shown, what).st_mode):
            raise InvalidInputError(f"{shown} is a symbolic link, or lies in a linked folder", _HINT)
    return here


def _lstat(path: Path, shown: str, what: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"{shown} does not exist", "check the path, relative to the folder") from None
    except ValueError:  # a NUL byte
        raise InvalidInputError(f"{shown} is not a readable {what}", "check the path") from None
    except OSError as exc:
        raise InvalidInputError(f"{shown} cannot be read ({exc.strerror or exc})", "check the path") from None


def _in_home(folder: Path, given: PurePath, home: Path) -> bool:
    """Whether `folder / given` lies in `home`, as written or with the two folders' links resolved —
    by text alone, before anything under the folder is looked at."""
    homes = {normal_path(os.fspath(home)), Path(os.path.realpath(home))}
    places = {folder / given, Path(os.path.realpath(folder)) / given}
    return any(p == h or p.is_relative_to(h) for p in places for h in homes)


def read_photo(path: Path, folder: Path | None, *, max_bytes: int, home: Path | None = None) -> Photo:
    """The photo `path` names, read once (an RcmuError says why not).

    With a `folder` (a row of an export or a knowledge base) `path` is as written there and is held to
    the module doc's rules. Without one it comes from the calling program (`import_rows`), which may
    read any file anyway: it goes through the door too — a regular file, read once, within the size
    limit — confined only to the folder it really is in.
    """
    suffix = path.suffix or ".img"
    if folder is None:
        try:
            where = [normal_path(os.fspath(path)).parent, Path(os.path.realpath(path)).parent]
        except (ValueError, OSError):  # a NUL byte, a name over the length limit
            raise InvalidInputError(
                f"photo {shown_path(str(path))} is not a readable photo", "check the path"
            ) from None
        inbound = read_photo_file(path, where, max_bytes=max_bytes)
        return Photo(inbound.data, suffix, shown_path(str(path)))
    full = check_inside(folder, path, home=home)
    deny = (home,) if home is not None else ()
    try:
        inbound = read_photo_file(full, [folder], deny=deny, max_bytes=max_bytes, single_link=True, no_links=True)
    except InvalidInputError as exc:  # the door names the joined path: name it as the file wrote it
        problem = exc.problem.replace(shown_path(str(full)), shown_path(str(path)), 1)
        raise InvalidInputError(problem, _HINT) from None
    return Photo(inbound.data, suffix, shown_path(str(path)))


def check_single(path: Path, what: str, given: PurePath) -> None:
    """A file the import reads by path (an export's manifest and entities) must have no other hard link."""
    try:
        links = os.lstat(path).st_nlink
    except OSError:
        return  # the reader reports a missing file in its own words
    if links > 1:
        raise InvalidInputError(f"{what} {shown_path(str(given))} has other hard links", _HINT)
