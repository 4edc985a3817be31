"""User ids: the one rule every entry point (CLI, graph, servers, memory) checks them by.

A user id names a folder under the home and a partition of every store, so it is a short plain
token; anything else is refused before it reaches a path or a query.
"""

from __future__ import annotations

import re

from rcmu_agent.errors import InvalidInputError

__all__ = ["check_user"]

USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def check_user(user: str) -> str:
    """`user`, if it is a valid id; else an error saying what an id may hold."""
    if not isinstance(user, str) or not USER.match(user):
        raise InvalidInputError(
            f"user id {user!r} is not valid", "use 1-64 letters, digits, '.', '_', '-' or '@', starting alphanumeric"
        )
    return user
