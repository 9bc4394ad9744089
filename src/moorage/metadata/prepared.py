"""A statement built once and, on SQLite, run straight through the driver's cursor.

For a small indexed statement SQLAlchemy's work per execution (the compiled cache's lookup,
parameter processing, events, the result object: ~25-30 µs) costs several times SQLite's own
(~5 µs). Two callers run such statements where that overhead is most of their cost:

- the garbage collector (gc_sql.py, gc_queue.py), five to seven per candidate inside its write
  transactions, where every microsecond is time a push waits for the writer lock: through the
  driver, a collection's CPU inside its transactions fell to about a quarter, its CPU in all to
  a third (bench/README.md, where the p99 came from);
- the small push (sql.py: the upload's row, the blob lookups, the link's transaction), about
  ten statements per 4 KiB blob, where they were a large share of the server's CPU per push
  (bench/README.md, push section).

PostgreSQL, where the round trip dominates, goes through SQLAlchemy as before. Statements run
through the driver are invisible to SQLAlchemy's statement events (a test counting statements
must trace the driver: ``sqlite3.Connection.set_trace_callback``).

Only for statements whose parameters and result columns need no conversion (strings, integers,
floats, bytes, None): values go to the driver, and rows come back from it, as they are. Rows
have the statement's column names as attributes, as SQLAlchemy's do.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.compiler import Compiled


class _Compiled:
    __slots__ = ("fixed", "names", "row", "sql")

    def __init__(self, statement: Any, conn: Connection) -> None:
        compiled: Compiled = statement.compile(dialect=conn.dialect)
        binds = compiled.binds  # type: ignore[attr-defined]
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())  # type: ignore[attr-defined]
        # Values fixed in the statement itself (a literal, a LIMIT, a NULL or constant in an
        # UPDATE's SET), by name; a parameter given by the caller overrides one, as in SQLAlchemy.
        self.fixed = {
            name: binds[name].effective_value for name in self.names if not binds[name].required
        }
        columns = list(statement.exported_columns.keys())
        self.row: Callable[[Sequence[Any]], Sequence[Any]] = tuple
        if columns:
            named: Any = namedtuple("Row", columns, rename=True)  # type: ignore[misc]
            self.row = named._make


class Prepared:
    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._sqlite: _Compiled | None = None

    def _driver(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, _Compiled]:
        compiled = self._sqlite
        if compiled is None:
            compiled = self._sqlite = _Compiled(self.statement, conn)
        raw = conn.connection.driver_connection
        assert raw is not None
        fixed = compiled.fixed
        values = [params[n] if n in params else fixed[n] for n in compiled.names]
        return raw.execute(compiled.sql, values), compiled

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row (its columns by position and by name, as a Row), or None."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).first()
        cursor, compiled = self._driver(conn, params)
        row = cursor.fetchone()
        return None if row is None else compiled.row(row)

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).scalar()
        row = self._driver(conn, params)[0].fetchone()
        return None if row is None else row[0]

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a write; how many rows it changed."""
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, params).rowcount)
        return int(self._driver(conn, params)[0].rowcount)
