"""Tools that look at a photo: `ask_about_photo` and `describe_photo`.

Both run the agent's graph (detect → recognise → region context → model → citations) through
`Assistant.ask` / `Assistant.aask`, so a tool call gets exactly what `rcmu ask` would print.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import ArgsSchema
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from rcmu_agent.prompt import DESCRIBE_QUESTION
from rcmu_agent.schema import MAX_REGION_INFO_CHARS, Answer, Region
from rcmu_agent.tools._common import RcmuTool, answer_text, failures

__all__ = ["AskAboutPhotoInput", "AskAboutPhotoTool", "DescribePhotoInput", "DescribePhotoTool", "Photo", "RegionInput"]


def _fspath(value: Any) -> Any:
    """Host code may pass `Path` objects; they validate as the string the model would send."""
    import os

    return os.fspath(value) if isinstance(value, os.PathLike) else value


# Models see a plain string; host code may also pass bytes or an image content block (dict).
Photo = Annotated[str | bytes | dict[str, Any], BeforeValidator(_fspath), WithJsonSchema({"type": "string"})]
PHOTO_HELP = (
    "The photo: a local file path (best), a file:// URL, or base64 image data (optionally as a "
    "data:image/...;base64, URL). Host code may also pass bytes or a LangChain image content block. "
    "Remote http(s) URLs are refused."
)


class RegionInput(BaseModel):
    """A region of the photo the caller already knows about; giving regions skips detection."""

    model_config = ConfigDict(extra="forbid")

    box: list[float] = Field(
        min_length=4, max_length=4, description="Pixel corners [x1, y1, x2, y2] in the original photo, x1<x2, y1<y2."
    )
    category: str = Field(default="person", description="What is there: person, dog, cat, cup, ...")
    # the length cap is in the schema a model reads (maxLength), so a well-behaved caller never meets it
    info: str | None = Field(
        default=None,
        max_length=MAX_REGION_INFO_CHARS,
        description=f"What is known about it, a few sentences (at most {MAX_REGION_INFO_CHARS} characters). "
        "Leave out to let the assistant recognise it from memory.",
    )

    def to_region(self) -> Region:
        return Region(box=(self.box[0], self.box[1], self.box[2], self.box[3]), category=self.category, info=self.info)

    @model_validator(mode="after")
    def _valid(self) -> RegionInput:
        """`Region` owns the box rules (ordered, finite, a non-empty category); checking here puts its
        complaint under `regions.K` in the message a model gets back."""
        try:
            self.to_region()
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
        return self


class AskAboutPhotoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photo: Photo = Field(description=PHOTO_HELP)
    question: str = Field(
        description="The question about the photo, e.g. 'Who is on the left?' or 'What does the man in "
        "<region1> like?' (<regionK> refers to the K-th entry of `regions`)."
    )
    regions: list[RegionInput] | None = Field(
        default=None,
        description="Optional regions with known boxes (pixels). Omit to detect faces and remembered objects.",
    )


class DescribePhotoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photo: Photo = Field(description=PHOTO_HELP)


def _regions(regions: list[RegionInput] | None) -> list[Region] | None:
    return [r.to_region() for r in regions] if regions else None


class AskAboutPhotoTool(RcmuTool):
    """Photo + question → answer with [n] citations to recognised regions."""

    name: str = "ask_about_photo"
    description: str = (
        "Answer a question about a photo using the user's personal memory. People and things the user "
        "taught with `remember` are recognised in the photo, what is known about each is given to a "
        "vision-language model, and the answer cites them as [n]; the reply lists what each [n] is "
        "(name, category, pixel box). Use it for 'who is in this photo?' or 'what does the woman on the "
        "right enjoy?'. For a question with no photo, use `recall`."
    )
    args_schema: ArgsSchema | None = AskAboutPhotoInput

    def _run(
        self,
        photo: Any,
        question: str,
        regions: list[RegionInput] | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            answer = self.assistant.ask(question, self.photo(photo), regions=_regions(regions), user=self.scope)
        return _reply(answer)

    async def _arun(
        self,
        photo: Any,
        question: str,
        regions: list[RegionInput] | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            answer = await self.assistant.aask(question, self.photo(photo), regions=_regions(regions), user=self.scope)
        return _reply(answer)


class DescribePhotoTool(RcmuTool):
    """Photo → a description that weaves in what memory knows about who and what is in it."""

    name: str = "describe_photo"
    description: str = (
        "Describe a photo, weaving in what the user's personal memory knows about the people and things "
        "recognised in it, with [n] citations; the reply lists what each [n] is (name, category, pixel box)."
    )
    args_schema: ArgsSchema | None = DescribePhotoInput

    def _run(self, photo: Any, run_manager: CallbackManagerForToolRun | None = None) -> tuple[str, dict[str, Any]]:
        with failures():
            answer = self.assistant.ask(DESCRIBE_QUESTION, self.photo(photo), user=self.scope)
        return _reply(answer)

    async def _arun(
        self, photo: Any, run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[str, dict[str, Any]]:
        with failures():
            answer = await self.assistant.aask(DESCRIBE_QUESTION, self.photo(photo), user=self.scope)
        return _reply(answer)


def _reply(answer: Answer) -> tuple[str, dict[str, Any]]:
    """Text for the model; the structured answer (as `rcmu ask --json` prints it) as the artifact."""
    return answer_text(answer), {**answer.summary(), "photo": answer.photo}
