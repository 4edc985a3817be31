"""Teach the assistant two people, then ask who is where in a photo of both.

    python examples/quickstart.py                  # downloads RC-Qwen2-VL-2B (~4.4 GB) on first use
    python examples/quickstart.py --context-only   # no model: print the region context it would send
    RCMU_MODEL=/path/to/model python examples/quickstart.py
    RCMU_BACKEND=openai RCMU_BASE_URL=http://localhost:8000/v1 python examples/quickstart.py

Memory goes to ./.rcmu-quickstart unless RCMU_HOME is set, so your own memory is left alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rcmu_agent import Assistant, RcmuError, Settings

PHOTOS = Path(__file__).resolve().parent / "photos"
PEOPLE = {
    "Barack Obama": ("obama.jpg", "Barack Obama, 44th president of the United States, plays basketball on weekends"),
    "Joe Biden": ("biden.jpg", "Joe Biden, 46th president of the United States, loves chocolate chip ice cream"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context-only", action="store_true", help="stop before the model")
    parser.add_argument("--question", default="Who is on the left, and what does he enjoy?")
    args = parser.parse_args()

    home = Path(os.environ.get("RCMU_HOME", ".rcmu-quickstart"))
    assistant = Assistant(Settings(home=home))
    try:
        for name, (photo, info) in PEOPLE.items():
            entity = assistant.remember(name, info=info, photos=[PHOTOS / photo])
            print(f"remembered {entity.name} from {photo}")
        answer = assistant.ask(args.question, PHOTOS / "two_people.jpg", context_only=args.context_only)
    except RcmuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(answer.prompt if answer.context_only else answer.text)
    print()
    for region in sorted(answer.regions, key=lambda r: r.index or 99):
        label = f"[{region.index}]" if region.index else "[-]"
        print(f"{label} {region.name or 'unknown'} at {tuple(round(v) for v in region.box or ())}")
    for citation in answer.citations:
        print(f"cites [{citation.index}] -> {citation.name if citation.valid else 'nothing (invalid)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
