"""What both backends of the library's sidecar share: the shape of a transaction and a row, and the
check every statement passes before it runs.

The SQL is written once for SQLite and PostgreSQL. The one trap between them is the `user` column:
unquoted, PostgreSQL reads it as CURRENT_USER (the database login), so `WHERE user=?` compares the
login with the parameter — matching no row, or, for a user named like the login, every row.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Backend", "Row", "Tx", "checked_sql"]

Row = Any  # a row read by column name: sqlite3.Row (SQLite) or a dict (PostgreSQL)

_LITERAL = re.compile(r"'[^']*'")
_BARE_USER = re.compile(r'(?<!")\buser\b(?!")', re.IGNORECASE)


@functools.lru_cache(maxsize=2048)
def checked_sql(sql: str) -> str:
    """`sql` itself, once it is known not to name the user column unquoted: in PostgreSQL a bare
    `user` is CURRENT_USER, so `WHERE user=?` would compare the database login and match nobody (or,
    worse, everybody). Both backends check, so the embedded tests catch a slip too."""
    if _BARE_USER.search(_LITERAL.sub("''", sql)):
        raise ValueError(f'library SQL names the user column unquoted (write "user"): {sql}')
    return sql


class Tx(Protocol):
    """What a statement inside a transaction runs on (both backends' connections fit)."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class Backend(Protocol):
    """One database: statements, and transactions that commit whole or not at all."""

    def transaction(self) -> AbstractContextManager[Tx]: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def close(self) -> None: ...
