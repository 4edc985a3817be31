"""LangChain tools over the assistant, for host agents (`rcmu_agent.tools`).

    from langchain.agents import create_agent
    from rcmu_agent.tools import rcmu_tools

    agent = create_agent("openai:gpt-4.1-mini", tools=rcmu_tools(user="alice"))

Seven tools, each a `BaseTool` with a typed argument schema, sync and native async, answering as
`(text for the model, structured artifact)`: `ask_about_photo`, `describe_photo`, `remember`, `forget`,
`list_people`, `recall` (memory questions without a photo) and `search_photos` (the photo library).
`rcmu mcp` serves the same tools to MCP clients (`rcmu_agent.tools.mcp.server`). The user is fixed
when the tools are built; a model cannot pick another user's memory.

Exports load lazily: `rcmu` imports this package for its CLI commands and must not pay for LangChain.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rcmu_agent.tools.library_tools import SearchPhotosInput, SearchPhotosTool
    from rcmu_agent.tools.memory_tools import (
        ForgetInput,
        ForgetTool,
        ListPeopleInput,
        ListPeopleTool,
        RecallInput,
        RecallTool,
        RememberInput,
        RememberTool,
    )
    from rcmu_agent.tools.photo_tools import (
        AskAboutPhotoInput,
        AskAboutPhotoTool,
        DescribePhotoInput,
        DescribePhotoTool,
        RegionInput,
    )
    from rcmu_agent.tools.toolkit import RcmuToolkit, rcmu_tools

__all__ = [
    "AskAboutPhotoInput",
    "AskAboutPhotoTool",
    "DescribePhotoInput",
    "DescribePhotoTool",
    "ForgetInput",
    "ForgetTool",
    "ListPeopleInput",
    "ListPeopleTool",
    "RcmuToolkit",
    "RecallInput",
    "RecallTool",
    "RegionInput",
    "RememberInput",
    "RememberTool",
    "SearchPhotosInput",
    "SearchPhotosTool",
    "rcmu_tools",
]

_HOME = {
    "AskAboutPhotoInput": "photo_tools",
    "AskAboutPhotoTool": "photo_tools",
    "DescribePhotoInput": "photo_tools",
    "DescribePhotoTool": "photo_tools",
    "RegionInput": "photo_tools",
    "ForgetInput": "memory_tools",
    "ForgetTool": "memory_tools",
    "ListPeopleInput": "memory_tools",
    "ListPeopleTool": "memory_tools",
    "RecallInput": "memory_tools",
    "RecallTool": "memory_tools",
    "RememberInput": "memory_tools",
    "RememberTool": "memory_tools",
    "SearchPhotosInput": "library_tools",
    "SearchPhotosTool": "library_tools",
    "RcmuToolkit": "toolkit",
    "rcmu_tools": "toolkit",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f"rcmu_agent.tools.{_HOME[name]}"), name)
    raise AttributeError(f"module 'rcmu_agent.tools' has no attribute {name!r}")
