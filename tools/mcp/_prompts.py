"""The MCP server's prompts: what a person picks from an MCP host's prompt menu (a slash command in most
hosts) to start the three common jobs without knowing the tool names.

Each prompt renders one user message that asks the host's model to call the right tool with the values
the person typed, and says how to present the result (keep the `[n]` citations, name each one). The
values are quoted as JSON, so a name or question with quotes or line breaks stays one value.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

__all__ = ["add_prompts"]

PhotoArg = Annotated[
    str,
    Field(description="The photo: a file path inside the folders rcmu may read, a file:// URL, or base64 data."),
]
_CITED = (
    "Give me its answer with its [n] citations kept, then say who or what each [n] is, from the legend "
    "the tool returns. If the tool returns an error, tell me the fix it gives."
)


def add_prompts(server: MCPServer[Any]) -> None:
    """Register the prompts on `server`."""

    @server.prompt(title="Who is in this photo?")
    def who_is_in_photo(
        photo: PhotoArg,
        question: Annotated[str, Field(description="What to ask about the photo.")] = "Who is in this photo?",
    ) -> str:
        """Ask about a photo: who is in it, recognised from the people you taught rcmu, with cited answers."""
        return (
            f"Call the rcmu tool ask_about_photo with photo = {json.dumps(photo)} and "
            f"question = {json.dumps(question)}. {_CITED}"
        )

    @server.prompt(title="Teach rcmu someone")
    def teach(
        name: Annotated[str, Field(description="Who or what, e.g. 'Rose Leslie' or 'Bella'.")],
        photo: PhotoArg,
        info: Annotated[str, Field(description="What to know about them, a sentence or two.")] = "",
    ) -> str:
        """Teach rcmu a person, pet or thing from a photo of them, so later photos are recognised."""
        about = f" and info = {json.dumps(info)}" if info.strip() else ""
        return (
            f"Call the rcmu tool remember with name = {json.dumps(name)}, photos = [{json.dumps(photo)}]{about}. "
            "Then tell me in one sentence what rcmu now knows, or the fix it gives if it refuses."
        )

    @server.prompt(title="Find my photos")
    def find_photos(
        request: Annotated[str, Field(description="What to look for, e.g. 'Bella at the beach last summer'.")],
    ) -> str:
        """Find photos in your indexed library by who is in them, what they show and when they were taken."""
        return (
            f"Find photos in my library with the rcmu tool search_photos for this request: {json.dumps(request)}. "
            "Put the names of people in `people`, what the photo shows in `text`, and dates in `since` / `until` "
            "(YYYY-MM-DD). List each photo's file name, date and who is in it."
        )
