"""The deployment check: teach through one replica, ask through another (`deploy/check.sh` runs it).

`python deploy/check.py --first URL --second URL --token TOKEN --reference PHOTO --scene PHOTO`: alice
(the token's user) teaches Barack Obama from PHOTO through the first `rcmu mcp --http` replica, then
asks the second about SCENE. It passes when the second recognises him, shows his reference photo (the
person resource's thumbnail) and lists him once; each step prints one line, a failure one `problem —
fix` line and exit status 1. Run it against any pair of replicas of a deployment to see that they share
their memory (RCMU_DATABASE_URL and RCMU_CHROMA_URL name the same services on both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

NAME = "Barack Obama"


class CheckFailed(Exception):
    """One step of the check did not hold: its message says what and what to look at."""


@asynccontextmanager
async def session(url: str, token: str) -> AsyncIterator[ClientSession]:
    """An MCP client session with `url` as the token's user (the official SDK over streamable HTTP)."""
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


def _result(result: Any, step: str) -> dict[str, Any]:
    if result.is_error:
        raise CheckFailed(f"{step} failed: {result.content[0].text}")  # the server's own `problem — fix`
    return dict(result.structured_content)


async def check(first: str, second: str, token: str, reference: str, scene: str) -> None:
    async with session(first, token) as a:
        arguments = {"name": NAME, "info": "taught through the first replica", "photos": [reference]}
        taught = _result(await a.call_tool("remember", arguments), "remember on the first replica")
        print(f"first replica: remembered {taught['entity']['name']} ({taught['entity']['photos']} photo)")
    async with session(second, token) as b:
        asked = _result(await b.call_tool("ask_about_photo", {"photo": scene, "question": "Who is here?"}), "ask")
        names = [r["name"] for r in asked["regions"] if r["name"]]
        if NAME not in names:
            raise CheckFailed(
                f"the second replica did not recognise {NAME} (it saw {names or 'nobody'}) — "
                "give both replicas the same RCMU_DATABASE_URL and RCMU_CHROMA_URL"
            )
        print(f"second replica: recognised {', '.join(names)}; the model answered: {asked['answer']}")
        people = _result(await b.call_tool("list_people", {}), "list_people")["people"]
        ids = [p["id"] for p in people if p["name"] == NAME]
        if len(ids) != 1:
            raise CheckFailed(
                f"the second replica lists {NAME} {len(ids)} times — start from an empty database, or forget him first"
            )
        shown = json.loads((await b.read_resource(f"rcmu://people/{ids[0]}")).contents[0].text)  # type: ignore[union-attr]
        if not shown["thumbnails"]:
            raise CheckFailed(
                f"the second replica has no reference photo of {NAME} — the photos must live in the shared database"
            )
        print(f"second replica: shows {len(shown['thumbnails'])} reference photo(s) of {NAME}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Teach through one rcmu replica, ask through another.")
    parser.add_argument("--first", required=True, help="the first replica's MCP URL, e.g. http://a:8765/mcp")
    parser.add_argument("--second", required=True, help="the second replica's MCP URL")
    parser.add_argument("--token", required=True, help="a bearer token both replicas accept")
    parser.add_argument("--reference", required=True, help="a photo of Barack Obama, readable by the first replica")
    parser.add_argument("--scene", required=True, help="a photo with him in it, readable by the second replica")
    args = parser.parse_args(argv)
    try:
        asyncio.run(check(args.first, args.second, args.token, args.reference, args.scene))
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 1
    print("ok: the two replicas share one memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
