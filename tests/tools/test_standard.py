"""The `langchain-tests` standard suites for every tool, run for real.

Integration runs go through real memory (Chroma on disk, dlib faces on the shared photos) and the
`openai` backend over real HTTP to the loopback server; `remember` writes to its own user so the
other suites' memory stays as taught.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from rcmu_agent import Assistant
from rcmu_agent.tools import (
    AskAboutPhotoTool,
    DescribePhotoTool,
    ForgetTool,
    ListPeopleTool,
    RecallTool,
    RememberTool,
    SearchPhotosTool,
)

pytestmark = pytest.mark.integration  # langchain-tests over the tools: dlib, MiniLM, Chroma, a loopback server


class _Bound:
    """Builds the tool class under test from the session's assistant, scoped to one user."""

    tool_class: type[BaseTool]
    user = "alice"
    example: ClassVar[dict[str, Any]]

    @pytest.fixture(autouse=True)
    def _bind(self, assistant: Assistant, scene: Path, faces_dir: Path) -> None:
        self._assistant = assistant
        self._paths = {"scene": str(scene), "obama": str(faces_dir / "reference" / "obama_obama2.jpg")}

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return self.tool_class

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"assistant": self._assistant, "user": self.user}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {k: self._paths.get(v, v) if isinstance(v, str) else v for k, v in self.example.items()}


class _Ask(_Bound):
    tool_class = AskAboutPhotoTool
    example: ClassVar[dict[str, Any]] = {"photo": "scene", "question": "Who is on the left?"}


class _Describe(_Bound):
    tool_class = DescribePhotoTool
    example: ClassVar[dict[str, Any]] = {"photo": "scene"}


class _Remember(_Bound):
    tool_class = RememberTool
    user = "carol"
    example: ClassVar[dict[str, Any]] = {
        "name": "Barack Obama",
        "info": "Carol's neighbour, who jogs at dawn",
        "photos": ["obama"],
    }

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {**self.example, "photos": [self._paths["obama"]]}


class _Forget(_Bound):
    tool_class = ForgetTool
    user = "frank"
    example: ClassVar[dict[str, Any]] = {"name": "Joe Biden"}

    @pytest.fixture(autouse=True)
    def _taught(self, assistant: Assistant, faces_dir: Path) -> None:
        """Someone to forget in every test (frank's memory is this suite's alone)."""
        biden = faces_dir / "reference" / "biden_biden.jpg"
        assistant.remember("Joe Biden", info="Frank's neighbour", photos=[biden], user="frank")


class _ListPeople(_Bound):
    tool_class = ListPeopleTool
    example: ClassVar[dict[str, Any]] = {"category": "person"}


class _Recall(_Bound):
    tool_class = RecallTool
    example: ClassVar[dict[str, Any]] = {"question": "When did we adopt Bella?"}


class _Search(_Bound):
    tool_class = SearchPhotosTool
    example: ClassVar[dict[str, Any]] = {"people": ["Barack Obama", "Joe Biden"], "limit": 5}

    @pytest.fixture(autouse=True)
    def _indexed(self, library: Path) -> None:
        """Searches run against alice's indexed library."""


class TestAskAboutPhotoUnit(_Ask, ToolsUnitTests):
    pass


class TestAskAboutPhotoIntegration(_Ask, ToolsIntegrationTests):
    pass


class TestDescribePhotoUnit(_Describe, ToolsUnitTests):
    pass


class TestDescribePhotoIntegration(_Describe, ToolsIntegrationTests):
    pass


class TestRememberUnit(_Remember, ToolsUnitTests):
    pass


class TestRememberIntegration(_Remember, ToolsIntegrationTests):
    pass


class TestRecallUnit(_Recall, ToolsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """Built with no assistant, a tool reads `RCMU_*` once, at construction."""
        return {"RCMU_USER": "dave", "RCMU_BACKEND": "openai"}, {}, {"user": "dave"}


class TestRecallIntegration(_Recall, ToolsIntegrationTests):
    pass


class TestSearchPhotosUnit(_Search, ToolsUnitTests):
    pass


class TestSearchPhotosIntegration(_Search, ToolsIntegrationTests):
    pass


class TestForgetUnit(_Forget, ToolsUnitTests):
    pass


class TestForgetIntegration(_Forget, ToolsIntegrationTests):
    pass


class TestListPeopleUnit(_ListPeople, ToolsUnitTests):
    pass


class TestListPeopleIntegration(_ListPeople, ToolsIntegrationTests):
    pass
