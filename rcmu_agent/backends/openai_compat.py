"""RC-Qwen2-VL (or any vision chat model) behind an OpenAI-compatible endpoint, e.g. vLLM.

The request carries what the in-process backend would see: one user turn, the image first (resized
to the visual token budget and sent as a quality-92 JPEG, so a phone photo costs the server ~1,000
tokens and the wire a fraction of a megabyte), then the text block, decoded greedily.
Retries are ours (tenacity) rather than the SDK's, so there is one policy to reason about and
every failure that survives it reaches the user as a `BackendError` they can act on.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import openai
from tenacity import AsyncRetrying, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from rcmu_agent.backends.base import VisionLanguageModel
from rcmu_agent.errors import BackendError
from rcmu_agent.visual_budget import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, fit_to_budget, jpeg_data_url

if TYPE_CHECKING:
    from openai import AsyncStream, Stream
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionContentPartParam,
        ChatCompletionMessageParam,
    )
    from PIL import Image

    from rcmu_agent.settings import Settings

__all__ = ["OpenAICompatibleVLM", "TokenUsage"]

_Closer = AsyncGenerator[None, None]

OPENAI_URL = "https://api.openai.com/v1"
KEY_FIX = "set RCMU_API_KEY (or OPENAI_API_KEY)"

# Transient by nature: the same request may well succeed a moment later. Anything else (bad key,
# unknown model, malformed request) fails identically on every attempt, so retrying only delays it.
RETRYABLE: tuple[type[Exception], ...] = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


class OpenAICompatibleVLM(VisionLanguageModel):
    """Talks to a server instead of holding weights, so the agent runs on machines without a GPU."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout: float = 120.0,
        max_retries: int = 4,
        max_new_tokens: int = 128,
        retry_wait_max: float = 20.0,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        """Fail here, not at the first question, when api.openai.com is targeted without a key.

        A self-hosted server (vLLM) usually ignores the key, but the SDK insists on one, hence the
        "EMPTY" placeholder vLLM's own docs use.
        """
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base_url else None)
        if key is None:
            raise BackendError(f"no API key for {OPENAI_URL}", f"{KEY_FIX}, or set RCMU_BASE_URL")
        self.model = model
        self.base_url = base_url
        self.url = base_url or OPENAI_URL  # for messages only; the SDK resolves the real default
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_new_tokens = max_new_tokens
        self.retry_wait_max = retry_wait_max
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self._api_key = key
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        self._urls: OrderedDict[int, tuple[Image.Image, str]] = OrderedDict()
        # Async connections belong to the loop that opened them: reusing one client across two
        # `asyncio.run` calls fails with "Event loop is closed". So one client per loop.
        self._async_clients: dict[asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, _Closer]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatibleVLM:
        """The one place `Settings` names map onto this backend's knobs."""
        return cls(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
            max_new_tokens=settings.max_new_tokens,
            min_pixels=settings.min_pixels,
            max_pixels=settings.max_pixels,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, url={self.url!r})"  # never the key

    def generate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        return self.complete(text, image, max_new_tokens=max_new_tokens)[0]

    async def agenerate(self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None) -> str:
        """Native async, so many concurrent questions do not each pin a worker thread."""
        return (await self.acomplete(text, image, max_new_tokens=max_new_tokens))[0]

    def complete(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> tuple[str, TokenUsage]:
        """The answer and what it cost, for callers that account tokens (data generation, judges)."""
        client = self._sync_client()
        kwargs = self._request(text, image, max_new_tokens)
        retrying = Retrying(**self._retry_policy())
        try:
            completion: ChatCompletion = retrying(client.chat.completions.create, **kwargs)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from None
        return self._answer(completion), _usage(completion)

    async def acomplete(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> tuple[str, TokenUsage]:
        client = await self._async_client()
        # Resizing and encoding a photo takes ~100 ms of CPU: done in a thread, it no longer stalls the
        # other requests in flight on this loop.
        kwargs = await asyncio.to_thread(self._request, text, image, max_new_tokens)
        retrying = AsyncRetrying(**self._retry_policy())

        async def attempt() -> ChatCompletion:
            # The SDK's `create` is a decorated method tenacity cannot tell is async, so it would
            # hand back the un-awaited coroutine as the "result" and never retry.
            return await client.chat.completions.create(**kwargs)

        try:
            completion: ChatCompletion = await retrying(attempt)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from None
        return self._answer(completion), _usage(completion)

    def stream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> Iterator[str]:
        """The reply as the server sends it (`stream=True`, server-sent events).

        Opening the stream is retried like any request; once text has arrived a failure is final,
        since replaying would repeat what the reader has already seen.
        """
        client = self._sync_client()
        kwargs = {**self._request(text, image, max_new_tokens), "stream": True}
        try:
            chunks: Stream[ChatCompletionChunk] = Retrying(**self._retry_policy())(
                client.chat.completions.create, **kwargs
            )
            with chunks:
                empty = True
                for chunk in chunks:
                    if piece := _delta(chunk):
                        empty = False
                        yield piece
                if empty:
                    self._no_text()
        except openai.OpenAIError as exc:
            raise self._translate(exc) from None

    async def astream(
        self, text: str, image: Image.Image | None = None, *, max_new_tokens: int | None = None
    ) -> AsyncIterator[str]:
        client = await self._async_client()
        kwargs = {**await asyncio.to_thread(self._request, text, image, max_new_tokens), "stream": True}

        async def attempt() -> AsyncStream[ChatCompletionChunk]:
            return await client.chat.completions.create(**kwargs)

        try:
            chunks: AsyncStream[ChatCompletionChunk] = await AsyncRetrying(**self._retry_policy())(attempt)
            async with chunks:
                empty = True
                async for chunk in chunks:
                    if piece := _delta(chunk):
                        empty = False
                        yield piece
                if empty:
                    self._no_text()
        except openai.OpenAIError as exc:
            raise self._translate(exc) from None

    def _no_text(self) -> None:
        raise BackendError(
            f"server at {self.url} streamed no text for {self.model!r}",
            "check that the model accepts images and that the server's logs show no error",
        )

    def _sync_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(**self._client_options())
            return self._client

    def _client_options(self) -> dict[str, Any]:
        """No SDK retries: tenacity owns them, or every attempt would hide up to two more."""
        return dict(api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0)

    async def _async_client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [other for other in self._async_clients if other.is_closed()]:
                del self._async_clients[stale]
            if loop in self._async_clients:
                return self._async_clients[loop][0]
            client = openai.AsyncOpenAI(**self._client_options())
            closer = _close_with_loop(client)
            self._async_clients[loop] = (client, closer)
        await anext(closer)  # now the loop tracks it, and closes the client before the loop closes
        return client

    def _retry_policy(self) -> dict[str, Any]:
        """Exponential backoff, capped so a long outage costs minutes, not hours."""
        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": wait_exponential(multiplier=0.5, max=self.retry_wait_max),
            "retry": retry_if_exception_type(RETRYABLE),
            "reraise": True,  # the SDK's own exception, so `_translate` can tell causes apart
        }

    def _request(self, text: str, image: Image.Image | None, max_new_tokens: int | None) -> dict[str, Any]:
        """Image before text, as RC-Qwen2-VL was trained; no system message, as in its prompt format."""
        content: list[ChatCompletionContentPartParam] = []
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": self._data_url(image)}})
        content.append({"type": "text", "text": text})
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": content}]
        return {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_new_tokens or self.max_new_tokens,
        }

    def _data_url(self, image: Image.Image) -> str:
        """Encode each photo once: an evaluation asks many questions about the same decoded photo.

        Keyed by identity (the agent's decoded photos are shared, never edited in place); the
        entry keeps the image alive so its id cannot be reused by another while cached.
        """
        with self._lock:
            hit = self._urls.get(id(image))
            if hit is not None and hit[0] is image:
                self._urls.move_to_end(id(image))
                return hit[1]
        url = jpeg_data_url(fit_to_budget(image, min_pixels=self.min_pixels, max_pixels=self.max_pixels))
        with self._lock:
            self._urls[id(image)] = (image, url)
            while len(self._urls) > 8:
                self._urls.popitem(last=False)
        return url

    def _answer(self, completion: ChatCompletion) -> str:
        """Reject replies with nothing in them rather than handing the agent an empty answer."""
        choices = getattr(completion, "choices", None)  # absent when the body was not a completion
        if not choices:
            raise BackendError(
                f"server at {self.url} returned no choices for model {self.model!r}",
                "check the server's logs; it may have dropped the request",
            )
        message = choices[0].message
        if message.content is None:
            why = f"refusal: {message.refusal}" if message.refusal else f"finish: {choices[0].finish_reason}"
            raise BackendError(
                f"server at {self.url} returned no text for {self.model!r} ({_one_line(why, self._api_key)})",
                "check that the model accepts images and that the server's logs show no error",
            )
        return message.content

    def _translate(self, exc: openai.OpenAIError) -> BackendError:
        """One line naming the cause and the setting to change; the key itself never appears."""
        url, attempts = self.url, self.max_retries + 1
        detail = _server_message(exc, self._api_key)
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return BackendError(
                f"server at {url} rejected the API key (HTTP {exc.status_code})",
                f"{KEY_FIX} to a key that server accepts",
            )
        if isinstance(exc, openai.NotFoundError):
            return BackendError(
                f"server at {url} has no model {self.model!r} ({detail})",
                "set RCMU_MODEL to a model the server lists at /v1/models (and check RCMU_BASE_URL ends in /v1)",
            )
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(
                f"server at {url} did not answer within {self.timeout:g} s ({attempts} attempts)",
                "raise RCMU_REQUEST_TIMEOUT, lower RCMU_MAX_NEW_TOKENS, or check the server's load",
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendError(
                f"cannot reach OpenAI-compatible server at {url} ({attempts} attempts)",
                "start it, e.g. `vllm serve weihongliang/RC-Qwen2VL-2b`, or fix RCMU_BASE_URL",
            )
        if isinstance(exc, openai.RateLimitError):
            return BackendError(
                f"server at {url} still rate-limits after {attempts} attempts ({detail})",
                "wait and try again, send fewer requests at once, or raise RCMU_MAX_RETRIES",
            )
        if isinstance(exc, openai.InternalServerError):
            return BackendError(
                f"server at {url} kept failing (HTTP {exc.status_code}) after {attempts} attempts ({detail})",
                "check the server's logs; if it is only overloaded, raise RCMU_MAX_RETRIES",
            )
        if isinstance(exc, openai.APIStatusError):
            return BackendError(
                f"server at {url} refused the request (HTTP {exc.status_code}): {detail}",
                "check that the model accepts images and that RCMU_MAX_NEW_TOKENS fits its context",
            )
        return BackendError(
            f"server at {url} sent a response that is not a chat completion ({detail})",
            "check RCMU_BASE_URL points at an OpenAI-compatible /v1 endpoint",
        )


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one request cost, as the server reported them (0 when it reports nothing)."""

    prompt: int = 0
    completion: int = 0


def _delta(chunk: ChatCompletionChunk) -> str:
    """The text a streamed chunk adds to the first choice ("" for role-only or usage-only chunks)."""
    for choice in chunk.choices or []:
        if choice.index == 0 and choice.delta is not None and choice.delta.content:
            return choice.delta.content
    return ""


def _usage(completion: ChatCompletion) -> TokenUsage:
    usage = getattr(completion, "usage", None)
    if usage is None:
        return TokenUsage()
    return TokenUsage(prompt=usage.prompt_tokens or 0, completion=usage.completion_tokens or 0)


async def _close_with_loop(client: openai.AsyncOpenAI) -> _Closer:
    """A parked async generator: the loop's shutdown (as in `asyncio.run`) finalises it while the
    loop still runs, the one moment the client's sockets can be closed without leaking."""
    try:
        yield
    finally:
        await client.close()


def _server_message(exc: openai.OpenAIError, key: str) -> str:
    """The server's own explanation (vLLM and OpenAI both put it under "message")."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body
    else:
        text = body or getattr(exc, "message", None) or exc
    return _one_line(str(text), key)


def _one_line(text: str, key: str, limit: int = 300) -> str:
    """Servers echo headers in odd places; strip the key and keep the message to one line."""
    if key and key != "EMPTY":
        text = text.replace(key, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
