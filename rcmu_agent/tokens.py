"""Bearer tokens mapped to users, from one JSON file shared by every server face (LangGraph Server, MCP).

The file is a JSON object `{"<token>": "<user>"}`. It is read on each use, so adding or revoking a token
needs no restart, and tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

__all__ = ["load_tokens", "user_for_token"]


def load_tokens(path: Path) -> dict[str, str]:
    """Tokens to users, from a JSON object; a missing or malformed file is a clear error at first use."""
    from rcmu_agent.errors import InvalidInputError
    from rcmu_agent.users import check_user

    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot read the tokens file {path} ({type(exc).__name__})",
            'write a JSON object {"<token>": "<user>"} there, or point RCMU_TOKENS_FILE at one',
        ) from None
    if not isinstance(tokens, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()):
        raise InvalidInputError(f"tokens file {path} is not a JSON object of strings", 'use {"<token>": "<user>"}')
    return {token: check_user(user) for token, user in tokens.items() if token}


def user_for_token(token: str, tokens: dict[str, str]) -> str | None:
    """The user a token belongs to; every entry is compared in constant time."""
    found = None
    for known, user in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = user
    return found
