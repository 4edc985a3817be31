"""The seven tools as one toolkit, bound to one assistant and one user."""

from __future__ import annotations

from langchain_core.tools import BaseTool, BaseToolkit
from pydantic import ConfigDict, Field

from rcmu_agent.assistant import Assistant
from rcmu_agent.tools._common import default_assistant
from rcmu_agent.tools.library_tools import SearchPhotosTool
from rcmu_agent.tools.memory_tools import ForgetTool, ListPeopleTool, RecallTool, RememberTool
from rcmu_agent.tools.photo_tools import AskAboutPhotoTool, DescribePhotoTool

__all__ = ["TOOL_CLASSES", "RcmuToolkit", "rcmu_tools"]

TOOL_CLASSES: tuple[type[BaseTool], ...] = (
    AskAboutPhotoTool,
    DescribePhotoTool,
    RememberTool,
    ForgetTool,
    ListPeopleTool,
    RecallTool,
    SearchPhotosTool,
)


class RcmuToolkit(BaseToolkit):
    """`RcmuToolkit(assistant, user="alice").get_tools()`: every tool shares the assistant (models load
    once) and is scoped to `user`, which no model call can change."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    assistant: Assistant = Field(default_factory=default_assistant)
    user: str | None = None

    def get_tools(self) -> list[BaseTool]:
        return [cls(assistant=self.assistant, user=self.user) for cls in TOOL_CLASSES]


def rcmu_tools(assistant: Assistant | None = None, user: str | None = None) -> list[BaseTool]:
    """The rcmu tools for a host agent: ask_about_photo, describe_photo, remember, forget, list_people, recall,
    search_photos.

    `assistant` defaults to one built from the `RCMU_*` environment; `user` to its `RCMU_USER`.
    """
    return RcmuToolkit(assistant=assistant or Assistant(), user=user).get_tools()
