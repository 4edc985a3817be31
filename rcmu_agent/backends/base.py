"""The one interface every vision-language backend implements (and the agent's answer node calls)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["VisionLanguageModel"]


class VisionLanguageModel(ABC):
    """Answer one user turn: an optional image, then one text block. Greedy, no system message."""

    name: str = "vlm"

    @abstractmethod
    def generate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        """The model's reply, special tokens removed."""

    async def agenerate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        """Async variant; backends with a native async client override it."""
        return await asyncio.to_thread(self.generate, text, image, max_new_tokens=max_new_tokens)

    def stream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """The reply in pieces as they are decoded; joined, they are `generate`'s reply.

        The default yields the whole reply at once, for backends that cannot stream.
        """
        yield self.generate(text, image, max_new_tokens=max_new_tokens)

    async def astream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> AsyncIterator[str]:
        """Async `stream`: each piece is pulled in a worker thread, so the event loop never waits on
        the model (a LangGraph server keeps serving other runs meanwhile)."""
        pieces = self.stream(text, image, max_new_tokens=max_new_tokens)
        done = object()
        try:
            while (piece := await asyncio.to_thread(next, pieces, done)) is not done:
                yield str(piece)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                await asyncio.to_thread(close)
