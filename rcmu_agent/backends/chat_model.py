"""A vision-language backend seen as a LangChain chat model, for one photo.

LangGraph's `stream_mode="messages"` (what LangGraph Server, Studio and Agent Chat UI consume) streams
the tokens of LangChain chat models called inside a node. Wrapping our backends this way gives both
backends token streaming through the standard callbacks, with no side channel: the answer node calls
`invoke`/`ainvoke`, and LangChain switches to `_stream`/`_astream` when a caller is streaming.

The photo is bound to the instance rather than sent inside the message, so a 12-megapixel image is
not base64-encoded only to be decoded again a line later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from rcmu_agent.backends.base import VisionLanguageModel
from rcmu_agent.errors import InvalidInputError

__all__ = ["VLMChatModel"]


class VLMChatModel(BaseChatModel):
    """`backend` answering the last human message's text about `image` (one turn, as trained)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: VisionLanguageModel = Field(exclude=True)
    image: Any = Field(default=None, exclude=True)  # PIL.Image.Image | None
    max_new_tokens: int | None = None

    @property
    def _llm_type(self) -> str:
        return f"rcmu-{self.backend.name}"

    def _prompt(self, messages: list[BaseMessage]) -> str:
        human = [m for m in messages if isinstance(m, HumanMessage)]
        if not human or not isinstance(human[-1].text, str) or not human[-1].text:
            raise InvalidInputError("the model was called without a text prompt", "pass one human message")
        return human[-1].text

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.backend.generate(self._prompt(messages), self.image, max_new_tokens=self.max_new_tokens)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = self._prompt(messages)
        reply = await self.backend.agenerate(prompt, self.image, max_new_tokens=self.max_new_tokens)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in self.backend.stream(self._prompt(messages), self.image, max_new_tokens=self.max_new_tokens):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prompt = self._prompt(messages)
        async for piece in self.backend.astream(prompt, self.image, max_new_tokens=self.max_new_tokens):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
