"""A 12 MP phone photo through the door and into the vault, against reading the same bytes alone.

Every photo a question is about now enters once: `PhotoAccess.read` opens it without following a final
symlink, checks the opened descriptor (regular file, same device and inode, its real path inside the
allowed folders) and reads from it; `PhotoVault.put` hashes the bytes (SHA-256) and writes them to the
user's vault unless the same content is already there. Measured on `two_people.jpg` cropped to 4:3 and
upscaled to 4032x3024 (JPEG, quality 92), median of interleaved rounds:

1. door read against `Path.read_bytes()` on the same file (target: <= 1.1x);
2. door read + vault put of new bytes (hash and write) against `read_bytes()`;
3. door read + vault put of bytes already kept (hash only) against `read_bytes()`;
4. the whole ingest a question pays (door, decode check, vault) against bare read + decode
   (`load_image`), the decode dominating (target: <= 1.15x).

    python benchmarks/bench_vault.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_size import phone_photo


def interleaved(named: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per function, the functions taking turns so that drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in named}
    for fn in named.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in named.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from rcmu_agent import Settings
    from rcmu_agent.door import Inbound
    from rcmu_agent.images import PhotoCache, load_image
    from rcmu_agent.photos import PhotoAccess
    from rcmu_agent.vault import PhotoVault

    work = Path(tempfile.mkdtemp(prefix="rcmu-bench-vault-"))
    photos = work / "photos"
    photos.mkdir()
    photo = photos / "phone.jpg"
    phone_photo().save(photo, format="JPEG", quality=92)
    data = photo.read_bytes()
    settings = Settings(home=work / "home", allowed_roots=[photos])
    access = PhotoAccess.for_user(settings, "bench")
    vault = PhotoVault.in_folder(settings.home / "vault")
    cache = PhotoCache(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels, vault=vault)
    fresh = iter(range(10**9))

    def door_new() -> object:
        got = access.read(photo)
        return vault.put(f"u{next(fresh)}", got.data)  # a new user each time: the bytes are written

    def ingest() -> object:
        cache.clear()
        return cache.ingest("bench", access.read(photo))

    def bare_decode() -> object:
        return load_image(photo.read_bytes())

    timings = interleaved(
        {
            "read": photo.read_bytes,
            "door": lambda: access.read(photo),
            "door+put new": door_new,
            "door+put kept": lambda: vault.put("bench", access.read(photo).data),
            "bare decode": bare_decode,
            "ingest": ingest,
        },
        args.rounds,
    )
    assert cache.image("bench", vault.put("bench", data)).size == (4032, 3024)
    assert isinstance(access.read(photo), Inbound)
    read, decode = timings["read"], timings["bare decode"]
    print(f"12 MP JPEG ({len(data) / 2**20:.1f} MiB), median of {args.rounds} interleaved rounds:")
    print(f"  {'read_bytes alone':<40} {read * 1000:8.2f} ms   (baseline)")
    for name in ("door", "door+put new", "door+put kept"):
        print(f"  {name:<40} {timings[name] * 1000:8.2f} ms   {timings[name] / read:6.2f}x")
    print(f"  {'read + decode (load_image)':<40} {decode * 1000:8.2f} ms   (baseline)")
    ratio = timings["ingest"] / decode
    print(f"  {'ingest: door + decode + vault':<40} {timings['ingest'] * 1000:8.2f} ms   {ratio:6.2f}x (<= 1.15x)")


if __name__ == "__main__":
    main()
