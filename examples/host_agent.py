"""Your own agent, with the rcmu tools: any chat model that calls tools can ask who is in a photo.

    pip install langchain-openai            # or langchain-anthropic, langchain-ollama, ...
    python examples/host_agent.py --teach "Who is in examples/photos/two_people.jpg?"
    python examples/host_agent.py --model anthropic:claude-sonnet-4-5 "When did we adopt Bella?"

The host model (`--model`, or HOST_MODEL; any `init_chat_model` id) decides which tool to call; the
tools run the rcmu assistant configured by `RCMU_*` (RC-Qwen2-VL in-process by default, or a server
with RCMU_BACKEND=openai RCMU_BASE_URL=...). `--teach` first remembers the two people in
examples/photos. Memory goes to ./.rcmu-host-agent unless RCMU_HOME is set. The tools read photo
paths only under RCMU_ALLOWED_ROOTS; this example allows examples/photos and the current folder
when it is not set (a server facing strangers should allow an upload folder and nothing else).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage

from rcmu_agent import Assistant, RcmuError, Settings
from rcmu_agent.tools import rcmu_tools

PHOTOS = Path(__file__).resolve().parent / "photos"
PEOPLE = {
    "Barack Obama": ("obama.jpg", "Barack Obama, 44th president of the United States, plays basketball on weekends"),
    "Joe Biden": ("biden.jpg", "Joe Biden, 46th president of the United States, loves chocolate chip ice cream"),
}
SYSTEM_PROMPT = (
    "You help the user with their photos and their personal memory. Use the tools: ask_about_photo for "
    "questions about a photo (pass its path), describe_photo, recall for questions without a photo, "
    "remember to teach, search_photos for their library. Keep the tools' [n] citations and say who each is."
)


def ask(
    question: str, *, model: BaseChatModel | str, assistant: Assistant, user: str | None = None
) -> list[AnyMessage]:
    """Run the host agent on one question; every message of the exchange, tool results included."""
    agent = create_agent(model, tools=rcmu_tools(assistant, user=user), system_prompt=SYSTEM_PROMPT)
    result: dict[str, Any] = agent.invoke({"messages": [{"role": "user", "content": question}]})
    messages: list[AnyMessage] = result["messages"]
    return messages


def teach(assistant: Assistant, user: str | None) -> None:
    for name, (photo, info) in PEOPLE.items():
        entity = assistant.remember(name, info=info, photos=[PHOTOS / photo], user=user)
        print(f"remembered {entity.name} from {photo}")


def main(argv: Sequence[str] | None = None, *, model: BaseChatModel | None = None) -> int:
    """`model` lets a caller (the tests) hand in a chat model object instead of an id."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", help="e.g. 'Who is in examples/photos/two_people.jpg?'")
    parser.add_argument("--model", default=os.environ.get("HOST_MODEL", "openai:gpt-4.1-mini"), help="host model id")
    parser.add_argument("--user", default=None, help="whose memory the tools use [RCMU_USER]")
    parser.add_argument("--teach", action="store_true", help="first remember the two people in examples/photos")
    args = parser.parse_args(argv)

    roots = {} if os.environ.get("RCMU_ALLOWED_ROOTS") else {"allowed_roots": [PHOTOS, Path.cwd()]}
    assistant = Assistant(Settings(home=Path(os.environ.get("RCMU_HOME", ".rcmu-host-agent")), **roots))
    try:
        if args.teach:
            teach(assistant, args.user)
        host: BaseChatModel | str = model if model is not None else _chat_model(args.model)
        messages = ask(args.question, model=host, assistant=assistant, user=args.user)
    except (RcmuError, ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            for call in message.tool_calls:
                print(f"-> {call['name']}({', '.join(f'{k}={v!r}' for k, v in call['args'].items())})")
        elif isinstance(message, ToolMessage):
            print(f"<- {message.name} [{message.status}]")
            print("   " + str(message.content).replace("\n", "\n   "))
    final = messages[-1]
    print()
    print(final.text)
    return 0


def _chat_model(model_id: str) -> BaseChatModel:
    """Any provider `init_chat_model` knows; a missing provider package is an ImportError naming it."""
    from langchain.chat_models import init_chat_model

    return init_chat_model(model_id)


if __name__ == "__main__":
    sys.exit(main())
