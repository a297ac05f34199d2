"""A MySQLdb-shaped connection over an asyncio MySQL driver, driven from the bridge.

Django's mysql backend talks to mysqlclient (``MySQLdb``): ``cursor()``,
``autocommit(on)``, ``commit()``, ``ping()``, ``encoders``/``escape()`` and
MySQLdb's exception classes, which its error wrapper and its ``CursorWrapper``
inspect. :class:`Connection` and :class:`Cursor` present that interface over an
async driver's connection; every call that reaches the server is awaited on the
event loop through :func:`aorm.bridge.await_`.

- A statement's rows come back with its ``execute`` (one await), as with
  mysqlclient's default buffered cursor; fetches never wait. Extra result sets
  of a multi-statement string (Django's ``SET ...; SET ...``) are read at once,
  so a connection is never left with unread results.
- Driver errors become MySQLdb's classes with the same ``args``
  (``(errno, message)``), chosen by error code exactly as mysqlclient chooses
  them, so Django raises the same ``IntegrityError``/``DataError``/
  ``OperationalError``... as on its own backend.
- A call abandoned by cancellation (a client disconnect, a timeout) kills the
  server-side statement with ``KILL QUERY`` over a separate connection and
  closes this one: its protocol state is unknown, it is never reused.

Connections are pooled per event loop by :mod:`aorm.backends.pooling`, which
takes them from the :class:`Connector`; ``OPTIONS["pool"] = False`` opens one
per operation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import MySQLdb
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.utils import typecast_time
from MySQLdb.constants import CR, ER, FIELD_TYPE

from aorm.backends.pooling import ConnectionSource, cancel_timeout
from aorm.bridge import await_, in_bridge

__all__ = [
    "Connection",
    "Connector",
    "Cursor",
    "Driver",
    "mysqldb_error",
]

# A statement's rows, description, rowcount, lastrowid and executed SQL.
_Outcome = tuple[Sequence[Any], Any, int, Any, Any]

_IN_TRANS = 1  # SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = 2  # SERVER_STATUS_AUTOCOMMIT

logger = logging.getLogger("aorm.mysql")


@dataclass(frozen=True)
class Driver:
    """The asyncio driver's parts the adapter uses (asyncmy: see ``aorm.backends.mysql.base``)."""

    name: str
    connect: Callable[..., Awaitable[Any]]
    new_cursor: Callable[[Any], Awaitable[Any]]
    execute: Callable[[Any, Any, Any], Coroutine[Any, Any, _Outcome]]  # one statement, no cursor
    error: type[BaseException]  # the root of the driver's exceptions
    database_key: str
    conversions: dict[Any, Any]  # Django's choice: TIME columns as datetime.time
    connected: Callable[[Any], bool]


@functools.cache
def asyncmy_driver() -> Driver:
    import asyncmy
    from asyncmy import converters
    from asyncmy.cursors import Cursor

    class QuietCursor(Cursor):  # type: ignore[misc]
        """mysqlclient's behaviour: a statement's warnings are not fetched.

        asyncmy's cursor sends ``SHOW WARNINGS`` after every statement that has
        any, one more round trip, and logs them; Django's backend on
        mysqlclient does neither.
        """

        async def _show_warnings(self, connection: Any) -> None:
            pass

        def _escape_args(self, args: Any, conn: Any) -> Any:
            return escaped(conn, args)  # executemany(): mysqlclient's literals too

    async def new_cursor(raw: Any) -> Any:
        return raw.cursor(QuietCursor)

    def escaped(raw: Any, args: Any) -> Any:
        """The arguments as SQL literals, as mysqlclient's ``Cursor.execute`` escapes them."""
        if isinstance(args, tuple | list):
            return tuple(literal(raw, arg) for arg in args)
        if isinstance(args, dict):
            return {key: literal(raw, value) for key, value in args.items()}
        return raw.escape(args)

    async def execute(raw: Any, query: Any, args: Any) -> _Outcome:
        """``QuietCursor.execute`` and its fetch, without a cursor object.

        The same text query and the same result, read on the connection:
        a cursor per statement cost several coroutines more (a subclass of
        asyncmy's ``Cursor`` also misses its fast paths), about 20 µs a
        statement in ``bench/results/profile_mysql.md``.
        """
        if args is not None:
            query = query % escaped(raw, args)
        await raw.query(query)
        result = raw._result
        outcome = (
            result.rows or (),
            result.description,
            result.affected_rows,
            result.insert_id,
            query,
        )
        while result.has_next:
            await raw.next_result()
            result = raw._result
        return outcome

    return Driver(
        "asyncmy",
        asyncmy.connect,
        new_cursor,
        execute,
        asyncmy.errors.MySQLError,
        "database",
        {**converters.conversions, FIELD_TYPE.TIME: typecast_time},
        lambda raw: bool(raw.connected),
    )


def literal(raw: Any, value: Any) -> str:
    """``value`` as an SQL literal, as mysqlclient's ``Connection.literal`` makes it.

    asyncmy's own ``literal`` differs where raw SQL sees it: it rejects a list
    (mysqlclient's ``IN %s`` with a list), a set and a bytearray with
    TypeError, and always marks bytes ``_binary`` (a string comparison of
    them becomes binary, a selected one comes back as bytes); mysqlclient
    does that only with ``OPTIONS["binary_prefix"]``.
    """
    if isinstance(value, str):
        return "'" + raw.escape_string(value) + "'"  # type: ignore[no-any-return]
    if isinstance(value, bytes | bytearray):
        quoted: str = raw._quote_bytes(bytes(value))  # NO_BACKSLASH_ESCAPES too, as libmysql
        return "_binary" + quoted if raw._binary_prefix else quoted
    kind = type(value)
    if kind is tuple or kind is list:
        return "(" + ",".join(literal(raw, item) for item in value) + ")"
    if kind is set or kind is frozenset:
        if not all(isinstance(item, str) for item in value):
            raise TypeError("set elements must be strings")
        return "'" + raw.escape_string(",".join(value)) + "'"  # type: ignore[no-any-return]
    return raw.escape(value, raw._encoders)  # type: ignore[no-any-return]


# -- errors

# mysqlclient's classification of error codes (its _mysql.c, _mysql_Exception);
# any other code is an OperationalError, or an InternalError below 1000.
_CLASS_OF_CODE: dict[int, type[MySQLdb.Error]] = {
    0: MySQLdb.InterfaceError,
    **dict.fromkeys(
        (
            CR.COMMANDS_OUT_OF_SYNC,
            ER.DB_CREATE_EXISTS,
            ER.SYNTAX_ERROR,
            ER.PARSE_ERROR,
            ER.NO_SUCH_TABLE,
            ER.WRONG_DB_NAME,
            ER.WRONG_TABLE_NAME,
            ER.FIELD_SPECIFIED_TWICE,
            ER.INVALID_GROUP_FUNC_USE,
            ER.UNSUPPORTED_EXTENSION,
            ER.TABLE_MUST_HAVE_COLUMNS,
            ER.CANT_DO_THIS_DURING_AN_TRANSACTION,
        ),
        MySQLdb.ProgrammingError,
    ),
    **dict.fromkeys(
        (
            ER.WARN_DATA_TRUNCATED,
            ER.WARN_DATA_OUT_OF_RANGE,
            ER.NO_DEFAULT,
            ER.PRIMARY_CANT_HAVE_NULL,
            ER.DATA_TOO_LONG,
            ER.DATETIME_FUNCTION_OVERFLOW,
        ),
        MySQLdb.DataError,
    ),
    **dict.fromkeys(
        (
            ER.DUP_ENTRY,
            ER.DUP_UNIQUE,
            ER.NO_REFERENCED_ROW,
            ER.NO_REFERENCED_ROW_2,
            ER.ROW_IS_REFERENCED,
            ER.ROW_IS_REFERENCED_2,
            ER.CANNOT_ADD_FOREIGN,
            ER.NO_DEFAULT_FOR_FIELD,
            ER.BAD_NULL_ERROR,
        ),
        MySQLdb.IntegrityError,
    ),
    **dict.fromkeys(
        (
            ER.WARNING_NOT_COMPLETE_ROLLBACK,
            ER.NOT_SUPPORTED_YET,
            ER.FEATURE_DISABLED,
            ER.UNKNOWN_STORAGE_ENGINE,
        ),
        MySQLdb.NotSupportedError,
    ),
}


def mysqldb_error(exc: BaseException) -> MySQLdb.Error:
    """The MySQLdb exception mysqlclient would have raised for the driver's ``exc``."""
    args = exc.args
    if isinstance(exc, OSError | EOFError | asyncio.IncompleteReadError):
        args = (CR.SERVER_LOST, f"Lost connection to server during query ({exc!r})")
    code = args[0] if args and isinstance(args[0], int) else None
    if code is None:
        cls = getattr(MySQLdb, type(exc).__name__, MySQLdb.OperationalError)
        if not (isinstance(cls, type) and issubclass(cls, MySQLdb.Error)):
            cls = MySQLdb.OperationalError
        return cls(*args)
    default = MySQLdb.InternalError if 0 < code < 1000 else MySQLdb.OperationalError
    return _CLASS_OF_CODE.get(code, default)(*args)


# Server errors after which the session is gone (killed, server shutting down).
_SESSION_ENDED = {1053, 1927, 4031}  # ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED, MySQL's idle


def _fatal(error: MySQLdb.Error) -> bool:
    """Whether the connection cannot serve another statement after ``error``.

    Client-side errors (codes 2000-2999: server gone, connection lost,
    commands out of sync) and an interface error (code 0) leave it in an
    unknown state even when the driver still thinks it is connected.
    """
    code = error.args[0] if error.args and isinstance(error.args[0], int) else 0
    return code == 0 or 2000 <= code < 3000 or code in _SESSION_ENDED


# -- the connection Django holds

_T = Any


class Connection:
    """A MySQLdb-shaped connection; its I/O is awaited on the loop, from the bridge."""

    def __init__(self, raw: Any, source: Connector) -> None:
        self.raw = raw
        self.source = source
        self.pool: ConnectionSource | None = None  # where Django's close() returns it
        self.parked: Any = None  # the DatabaseWrapper kept with it between operations
        self.configured = False  # Django's per-connection setup ran
        self.broken = False  # abandoned mid-call or lost: never reused
        self._thread_id = raw.thread_id()

    # -- the I/O

    def io(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coroutine`` on the loop; driver errors become MySQLdb's."""
        if self.broken:
            coroutine.close()
            raise MySQLdb.OperationalError(
                CR.SERVER_GONE_ERROR,
                "MySQL server has gone away (aorm: this connection was closed after a "
                "cancelled or failed call)",
            )
        try:
            return await_(coroutine)
        except asyncio.CancelledError:
            self.abandon()
            raise
        except (self.source.driver.error, OSError, EOFError) as exc:
            error = mysqldb_error(exc)
            if _fatal(error) or not self.source.driver.connected(self.raw):
                self.broken = True  # the server ended the session, or the socket failed
            raise error.with_traceback(exc.__traceback__) from None

    def abandon(self) -> None:
        """A call was cancelled mid-flight: stop the server's work, drop the connection."""
        self.broken = True
        try:
            await_(self.source.kill_query(self._thread_id))
        except Exception as exc:  # best effort: the connection goes anyway
            logger.warning("error killing the query of a cancelled task: %s", exc)
        finally:
            self.raw.close()

    # -- MySQLdb's connection API, as Django uses it

    def cursor(self) -> Cursor:
        return Cursor(self)

    def autocommit(self, on: bool) -> None:
        if self.raw.get_autocommit() != bool(on):
            self.io(self.raw.autocommit(bool(on)))

    def get_autocommit(self) -> bool:
        return bool(self.raw.get_autocommit())

    def commit(self) -> None:
        self.io(self.raw.commit())

    def rollback(self) -> None:
        self.io(self.raw.rollback())

    def ping(self) -> None:
        self.io(self.raw.ping(reconnect=False))

    def close(self) -> None:
        """Django is done with the connection: give it back to its pool."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.putconn(self)
        elif not self.broken:
            self.broken = True
            self.raw.close()

    @property
    def open(self) -> bool:
        return self.source.driver.connected(self.raw) and not self.broken

    @property
    def closed(self) -> bool:
        return not self.open

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.server_status & _IN_TRANS)

    @property
    def encoders(self) -> dict[Any, Any]:
        return getattr(self.raw, "encoders", None) or self.raw._encoders  # type: ignore[no-any-return]

    def escape(self, value: Any, mapping: Any = None) -> str:
        return self.raw.escape(value, mapping)  # type: ignore[no-any-return]

    def literal(self, value: Any) -> str:
        return literal(self.raw, value)

    def thread_id(self) -> int:
        return int(self._thread_id)

    def get_server_info(self) -> str:
        return self.raw.get_server_info()  # type: ignore[no-any-return]

    def character_set_name(self) -> str:
        return self.raw.character_set_name()  # type: ignore[no-any-return]

    def show_warnings(self) -> Any:
        return self.io(self.raw.show_warnings())


async def _on_cursor(driver: Driver, raw: Any, method: str, query: Any, args: Any) -> _Outcome:
    """One ``executemany``/``callproc`` on a driver cursor: its rows, every further result read."""
    cursor = await driver.new_cursor(raw)
    try:
        await getattr(cursor, method)(query, args)
        description = cursor.description
        rows = (await cursor.fetchall()) if description else ()
        outcome = (rows or (), description, cursor.rowcount, cursor.lastrowid, cursor._executed)
        while await cursor.nextset():
            pass
        return outcome
    finally:
        await cursor.close()


class Cursor:
    """A MySQLdb-shaped buffered cursor: ``execute`` brings every row back."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._rows: Sequence[Any] = ()
        self._position = 0
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Any = None
        self._executed: Any = None

    def _run(self, statement: Coroutine[Any, Any, _Outcome]) -> int:
        self._rows, self._position = (), 0
        self.description, self.rowcount = None, -1
        rows, description, rowcount, lastrowid, executed = self.connection.io(statement)
        self._rows, self.description, self.rowcount = rows, description, rowcount
        self.lastrowid, self._executed = lastrowid, executed
        return int(rowcount)

    def _run_on_cursor(self, method: str, query: Any, args: Any) -> int:
        connection = self.connection
        return self._run(_on_cursor(connection.source.driver, connection.raw, method, query, args))

    def execute(self, query: Any, args: Any = None) -> int:
        connection = self.connection
        return self._run(connection.source.driver.execute(connection.raw, query, args))

    def executemany(self, query: Any, args: Any) -> int | None:
        # Materialised here: a lazy iterable may run ORM code, which stays on the loop.
        return self._run_on_cursor("executemany", query, list(args))

    def callproc(self, procname: str, args: Sequence[Any] = ()) -> Sequence[Any]:
        self._run_on_cursor("callproc", procname, args)
        return args

    def fetchone(self) -> Any:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    # Tuples, as MySQLdb returns them: Django's end-of-rows sentinel is ``()``.
    def fetchmany(self, size: int | None = None) -> tuple[Any, ...]:
        end = self._position + (self.arraysize if size is None else size)
        rows = tuple(self._rows[self._position : end])
        self._position += len(rows)
        return rows

    def fetchall(self) -> tuple[Any, ...]:
        rows = tuple(self._rows[self._position :])
        self._position = len(self._rows)
        return rows

    def close(self) -> None:
        self._rows, self._position = (), 0

    def nextset(self) -> None:
        return None  # further result sets were read (and dropped) with execute

    def setinputsizes(self, *args: Any) -> None:
        pass

    def setoutputsizes(self, *args: Any) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchone, None)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- opening connections

# mysqlclient's connect() arguments that the async driver takes under the same name.
_SAME = {
    "host",
    "user",
    "password",
    "port",
    "unix_socket",
    "charset",
    "sql_mode",
    "read_default_file",
    "read_default_group",
    "init_command",
    "connect_timeout",
    "read_timeout",
    "ssl",
    "autocommit",
    "local_infile",
    "client_flag",
    "binary_prefix",
    "server_public_key",
    "use_unicode",
}
_DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")


def default_socket() -> str | None:
    """Where libmysqlclient looks for the server when HOST is empty or ``localhost``."""
    for path in (os.environ.get("MYSQL_UNIX_PORT"), *_DEFAULT_SOCKETS):
        if path and os.path.exists(path):
            return path
    return None


def driver_kwargs(alias: str, driver: Driver, conn_params: dict[str, Any]) -> dict[str, Any]:
    """Django's mysqlclient ``connect()`` arguments, for the async driver."""
    params = dict(conn_params)
    params.pop("conv", None)  # mysqlclient's converters: the driver's, as Django sets them up
    if "passwd" in params:
        params.setdefault("password", params.pop("passwd"))
    database = params.pop("database", params.pop("db", None))
    unknown = set(params) - _SAME
    if unknown:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']: {', '.join(sorted(unknown))} "
            f"cannot be passed to {driver.name}, aorm's async MySQL driver; it takes "
            f"{', '.join(sorted(_SAME - {'host', 'user', 'password', 'port'}))}."
        )
    if params.get("host", "localhost") == "localhost" and "unix_socket" not in params:
        # As libmysqlclient does: "localhost" (or no host) means the local socket.
        socket_path = default_socket()
        if socket_path is not None:
            params["unix_socket"] = socket_path
    params.setdefault("autocommit", None)  # the server's (on); Django sets it right after
    params["conv"] = driver.conversions
    if database:
        params[driver.database_key] = database
    return params


class Connector:
    """How one event loop opens, judges and closes connections to one database."""

    def __init__(self, alias: str, conn_params: dict[str, Any]) -> None:
        self.alias = alias
        self.driver = asyncmy_driver()
        self.kwargs = driver_kwargs(alias, self.driver, conn_params)
        self.server_data: dict[str, Any] | None = None  # Django's mysql_server_data, shared

    async def open(self) -> Connection:
        try:
            raw = await self.driver.connect(**self.kwargs)
        except (self.driver.error, OSError) as exc:
            raise mysqldb_error(exc) from exc
        return Connection(raw, self)

    async def kill_query(self, thread_id: int) -> None:
        """``KILL QUERY`` over a connection of its own, opened for that."""
        timeout = cancel_timeout(self.kwargs.get("connect_timeout"))
        kwargs = {**self.kwargs, "init_command": None, "connect_timeout": timeout}
        async with asyncio.timeout(timeout):
            raw = await self.driver.connect(**kwargs)
            try:
                cursor = await self.driver.new_cursor(raw)
                await cursor.execute(f"KILL QUERY {int(thread_id)}")
                await cursor.close()
            finally:
                raw.close()

    def reusable(self, connection: Connection) -> bool:
        """Open, in autocommit, outside a transaction: safe for the next borrower."""
        raw = connection.raw
        return (
            connection.open
            and bool(raw.server_status & _AUTOCOMMIT)
            and not raw.server_status & _IN_TRANS
        )

    async def check(self, connection: Connection) -> None:
        """The pool's health check (``CONN_HEALTH_CHECKS``): a ping."""
        try:
            await connection.raw.ping(reconnect=False)
        except BaseException:
            connection.broken = True
            raise

    async def close(self, connection: Connection) -> None:
        if connection.open:
            connection.broken = True
            await connection.raw.ensure_closed()
        else:
            connection.raw.close()


def in_async_io(connection: Any) -> bool:
    """Whether ``connection`` is this module's, used from the bridge."""
    return isinstance(connection, Connection) and in_bridge()
