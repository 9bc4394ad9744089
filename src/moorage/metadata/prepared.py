"""A statement built once and, on SQLite, run straight through the driver's cursor.

For a small indexed statement SQLAlchemy's work per execution (the compiled cache's lookup,
parameter processing, events, the result object: ~30 µs) costs several times SQLite's own
(~5 µs). The garbage collector runs five to seven of them per candidate inside its write
transactions, where every microsecond is time a push waits for the writer lock (and CPU taken
from the requests on a small machine): through the driver, a collection's CPU inside its
transactions fell to about a quarter, its CPU in all to a third (bench/README.md, where the
p99 came from). PostgreSQL, where the round trip dominates, goes through SQLAlchemy as before.

Only for statements whose parameters need no conversion (strings, integers, floats): the
values are handed to the driver as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.compiler import Compiled


class Prepared:
    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._sqlite: tuple[str, tuple[str, ...], dict[str, Any]] | None = None

    def _compiled(self, conn: Connection) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        if self._sqlite is None:
            compiled: Compiled = self.statement.compile(dialect=conn.dialect)
            names = tuple(compiled.positiontup or ())  # type: ignore[attr-defined]
            # Values fixed in the statement itself (a literal, a LIMIT), by name.
            fixed = {
                name: compiled.binds[name].effective_value  # type: ignore[attr-defined]
                for name in names
                if compiled.binds[name].value is not None  # type: ignore[attr-defined]
            }
            self._sqlite = (str(compiled), names, fixed)
        return self._sqlite

    def _driver(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        sql, names, fixed = self._compiled(conn)
        raw = conn.connection.driver_connection
        assert raw is not None
        return raw.execute(sql, [fixed[n] if n in fixed else params[n] for n in names])

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, or None."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).first()
        row: Sequence[Any] | None = self._driver(conn, params).fetchone()
        return row

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(conn, params)
        return None if row is None else row[0]

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a write; how many rows it changed."""
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, params).rowcount)
        return int(self._driver(conn, params).rowcount)
