"""Tool errors as an MCP caller reads them: one line, `problem — fix`, in the caller's own terms.

Two sources need rewording before they reach a client. The SDK validates arguments against the tool's
input model and reports pydantic's multi-line text, which names the server's internal classes and the
members of a union (`AskAboutPhotoInputArguments`, `photo.bytes`): here every error is named by the
argument path the caller wrote (`regions[0].box`), says what that argument should be in JSON terms, and
the fix lists the tool's arguments. The library's fixes name CLI commands (`see rcmu list`); a tool
caller gets the tool to call instead, or is told that the user has to act on the machine running rcmu.
No argument value is repeated back: it may be megabytes of base64, or the caller's private text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

__all__ = ["argument_problems", "for_tool_caller", "unknown_tool", "with_tool_fixes"]

_KINDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}
_SHORT = {"array": "list", "boolean": "true/false", "date": "YYYY-MM-DD", "date-time": "ISO 8601 date-time"}
_FORMATS = {"date": "a date as YYYY-MM-DD", "date-time": "a date and time (ISO 8601)"}
# pydantic error types that mean "the wrong kind of value" (the rest keep pydantic's own sentence)
_WRONG_KIND = re.compile(r"_type$|_parsing$|^(date|datetime|time)_from_|^(model|dataclass)_attributes_type$")

# The library's fixes name CLI commands; over MCP the same fix is a tool to call, or the user's to do.
TOOL_FIXES: tuple[tuple[str, str], ...] = (
    (r"see `rcmu list` for the names and ids", "call list_people for the names and ids"),
    (r"`rcmu forget ([^`]+)` first", r"call forget with name \1 first"),
    (r"use --category (\w+)", r"pass category \1"),
    (r"teach them with `rcmu remember`", "teach them with the remember tool"),
    (
        r"name a face cluster with `rcmu name CLUSTER NAME`",
        "ask the user to name a face cluster (`rcmu name CLUSTER NAME` where rcmu runs)",
    ),
    (
        r"index your photos first with `rcmu index DIR`",
        "ask the user to index their photos (`rcmu index DIR` where rcmu runs; no tool indexes)",
    ),
    (r"\(is the library indexed\? `rcmu index DIR`\)", "(if the library is not indexed, ask the user to index it)"),
    (r" \(--[a-z-]+\)", ""),  # "RCMU_MODEL (--model)": the caller has no command line
)


def with_tool_fixes(text: str) -> str:
    """`text` (a tool's error or result, any number of lines) with its CLI commands turned into tool calls."""
    for command, instead in TOOL_FIXES:
        text = re.sub(command, instead, text)
    return text


def for_tool_caller(text: str) -> str:
    """A tool error as one line, its fix in tool terms, and settings marked as the user's to change."""
    text = with_tool_fixes(text.removeprefix("error: "))
    problem, dash, fix = text.partition(" — ")
    if dash and "RCMU_" in fix and "base64" not in fix:
        text = f"{problem} — {fix} (a setting of the rcmu server: tell the user)"
    return " ".join(text.split())  # one line, whatever a library message held


def unknown_tool(name: str, tools: Iterable[str]) -> str:
    return f"there is no tool {name!r} — call one of: {', '.join(tools)}"


def argument_problems(tool: str, schema: Mapping[str, Any], exc: ValidationError) -> str:
    """`tool`'s argument errors as one line: each argument path once, then the arguments it takes."""
    by_path: dict[str, str] = {}
    for error in exc.errors():
        path, node = _walk(error["loc"], schema)
        if path in by_path:  # another member of the same union: one sentence per argument
            continue
        by_path[path] = _sentence(tool, path, node, error, schema)
    return f"{tool} got invalid arguments: {'; '.join(by_path.values())} — call {tool} again with {_signature(schema)}"


def _sentence(tool: str, path: str, node: Mapping[str, Any], error: Any, schema: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    if kind == "missing":
        return f"`{path}` is missing"
    if kind == "extra_forbidden":
        return f"`{path}` is not an argument of {tool}" if "." not in path else f"`{path}` is not allowed there"
    if _WRONG_KIND.search(kind):
        return f"`{path}` should be {_expected(node, schema)}, not {_given(error.get('input'))}"
    message = str(error["msg"]).removeprefix("Value error, ").replace(" after validation", "")
    message = re.sub(r"^(Input|List|String|Value|Dictionary|Tuple|Set) should", "should", message)
    return f"`{path}` {message}" if message.startswith("should") else f"`{path}`: {message}"


def _walk(loc: Iterable[Any], schema: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The argument path as the caller wrote it and the schema node there. pydantic's location also
    names union members (`photo.bytes`, `photo.dict[str,any]`); those are no key of the caller's JSON,
    so they are dropped."""
    path, node = "", _resolve(schema, schema)
    for part in loc:
        if isinstance(part, int):
            items = _branch(node, schema, lambda n: n.get("type") == "array")
            if items is not None:
                path, node = f"{path}[{part}]", _resolve(items.get("items", {}), schema)
            continue
        owner = _branch(node, schema, lambda n, key=part: key in n.get("properties", {}))
        if owner is not None:
            path, node = f"{path}.{part}" if path else str(part), _resolve(owner["properties"][part], schema)
        elif not path or node.get("additionalProperties") is False:
            path, node = f"{path}.{part}" if path else str(part), {}  # an extra key the caller sent
    return path or "arguments", node


def _branch(node: Mapping[str, Any], schema: Mapping[str, Any], fits: Any) -> Mapping[str, Any] | None:
    candidates = [node, *(_resolve(b, schema) for b in node.get("anyOf", []))]
    return next((c for c in candidates if fits(c)), None)


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    return node


def _expected(node: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    kinds: list[str] = []
    for branch in [node, *node.get("anyOf", [])]:
        branch = _resolve(branch, schema)
        if branch.get("format") in _FORMATS:
            kinds.append(_FORMATS[branch["format"]])
        elif isinstance(branch.get("type"), str):
            kinds.append(_KINDS.get(branch["type"], branch["type"]))
    unique = list(dict.fromkeys(kinds))
    return " or ".join(unique) if unique else "another kind of value"


def _given(value: Any) -> str:
    """What kind of JSON value the caller sent (not the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    return "an object" if isinstance(value, Mapping) else "another kind of value"


def _signature(schema: Mapping[str, Any]) -> str:
    """`photo (string, required), question (string, required), regions (list)`: what to send."""
    required = set(schema.get("required", []))
    parts = []
    for name, node in schema.get("properties", {}).items():
        branches = [_resolve(b, schema) for b in [node, *node.get("anyOf", [])]]
        kinds = [b.get("format") if b.get("format") in _FORMATS else b.get("type") for b in branches if b.get("type")]
        shown = "/".join(dict.fromkeys(_SHORT.get(str(k), str(k)) for k in kinds if k != "null")) or "any"
        parts.append(f"{name} ({shown}{', required' if name in required else ''})")
    return ", ".join(parts) if parts else "no arguments"
