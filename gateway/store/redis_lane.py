"""The Redis store's lane for sends: script calls batched per loop tick, pipelined.

The calls made in one loop tick are packed into one write (RESP, see ``pack``) the
moment the tick ends, on one connection the lane keeps, without waiting for the replies
of the batches before it: Redis answers in order, and one reader task hands each reply
to its caller as soon as it is read. A send therefore costs no connection checkout, no
task and no extra loop ticks before its batch is on the wire, and batches overlap with
Redis's work.

Each script stays atomic on its own; the batch is only a round trip. Failures:

- an error reply fails its own call;
- NOSCRIPT (Redis restarted or was flushed) loads the scripts and sends the call once
  more: a call refused with NOSCRIPT never ran;
- a broken connection or a read timeout fails every call in flight on it (whether Redis
  ran them is unknown, as with any lost reply) and the next batch takes a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# One call: script name, KEYS, ARGV, the caller's future, and whether it is a resend.
Call = tuple[str, list[str], list[str | int], "asyncio.Future[Any]", bool]


def pack(args: list[str | int]) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    # Built as one text and encoded once: a send has about forty arguments, mostly
    # ASCII, whose byte length is then their length.
    parts = [f"*{len(args)}\r\n"]
    for arg in args:
        text = arg if type(arg) is str else str(arg)
        size = len(text) if text.isascii() else len(text.encode())
        parts.append(f"${size}\r\n{text}\r\n")
    return "".join(parts).encode()


@contextlib.asynccontextmanager
async def reading(conn: Any) -> AsyncIterator[Any]:
    """The parser of ``conn``, under redis-py's read timeout and errors.

    Replies are read straight from the parser (an error reply is returned, not raised):
    ``read_response`` adds layers around every reply (timeout, error translation,
    bookkeeping) that cost more than the parsing. Here a batch gets them once.
    """
    try:
        async with asyncio.timeout(conn.socket_timeout):
            yield conn._parser
    except TimeoutError:
        raise RedisTimeoutError(f"Timeout reading from {conn._host_error()}") from None
    except OSError as exc:
        raise RedisConnectionError(
            f"Error while reading from {conn._host_error()} : {exc.args}"
        ) from None


def _no_script(result: object) -> bool:
    return isinstance(result, NoScriptError) or (
        isinstance(result, ResponseError) and str(result).startswith("NOSCRIPT")
    )


def _gone(conn: Any) -> bool:
    """Whether the connection is closed or the server hung up (what the pool checks
    before it lends a connection out)."""
    reader, writer = conn._reader, conn._writer
    return reader is None or writer is None or reader.at_eof() or writer.transport.is_closing()


class Lane:
    """Batched, pipelined script calls on one connection of ``client``'s pool."""

    def __init__(self, client: Any, scripts: dict[str, Any]) -> None:
        self._client = client
        self._scripts = scripts
        self._batch: list[Call] = []  # the calls of this tick
        self._conn: Any = None
        self._inflight: deque[list[Call]] = deque()  # written, replies not yet read
        self._waiting: list[list[Call]] = []  # batches waiting for a connection
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        """Run script ``name`` in this tick's batch; its reply (or its error)."""
        return await self.post(name, keys, args)

    def post(self, name: str, keys: list[str], args: list[str | int]) -> asyncio.Future[Any]:
        """Put script ``name`` in this tick's batch without waiting: the future gets its
        reply (or its error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._batch.append((name, keys, args, done, False))
        if len(self._batch) == 1:
            loop.call_soon(self._flush)
        return done

    async def aclose(self) -> None:
        """Wait for the calls in flight, then give the connection back to the pool."""
        self._flush()
        while self._reader or self._connecting or self._tasks:
            pending = [t for t in (self._reader, self._connecting, *self._tasks) if t]
            await asyncio.gather(*pending, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._client.connection_pool.release(conn)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._send(batch)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        return task

    def _send(self, batch: list[Call]) -> None:
        conn = self._conn
        if conn is None or self._connecting or (not self._inflight and _gone(conn)):
            self._waiting.append(batch)  # in order, behind the batches already waiting
            if not self._connecting:
                self._connecting = self._spawn(self._connect())
            return
        scripts = self._scripts
        conn._writer.write(
            b"".join(
                pack(["EVALSHA", scripts[name].sha, len(keys), *keys, *args])
                for name, keys, args, _, _ in batch
            )
        )
        self._inflight.append(batch)
        if self._reader is None:
            self._reader = self._spawn(self._read(conn))

    async def _connect(self) -> None:
        old, self._conn = self._conn, None
        pool = self._client.connection_pool
        try:
            if old is not None:
                await old.disconnect()
                await pool.release(old)
            conn = await pool.get_connection()
        except Exception as exc:
            waiting, self._waiting = self._waiting, []
            self._connecting = None
            _fail(waiting, exc)
            return
        self._conn, self._connecting = conn, None
        waiting, self._waiting = self._waiting, []
        for batch in waiting:
            self._send(batch)

    async def _read(self, conn: Any) -> None:
        try:
            while self._inflight:
                batch = self._inflight[0]
                again: list[Call] = []
                # Each caller is answered as soon as its reply is in: Redis works through
                # a batch one script after the other, and the first sends of it need not
                # wait for the last.
                async with reading(conn) as parser:
                    for call in batch:
                        self._settle(call, await parser.read_response(), again)
                self._inflight.popleft()
                if again:
                    self._spawn(self._resend(again))
        except BaseException as exc:
            # Every batch written to this connection is lost with it.
            inflight = list(self._inflight)
            self._inflight.clear()
            if self._conn is conn:
                self._conn = None
                self._spawn(_discard(self._client.connection_pool, conn))
            _fail(inflight, exc if isinstance(exc, Exception) else RedisConnectionError())
            if not isinstance(exc, Exception):
                raise
        finally:
            self._reader = None

    @staticmethod
    def _settle(call: Call, result: Any, again: list[Call]) -> None:
        done = call[3]
        if done.done():  # the caller gave up (cancelled)
            return
        if _no_script(result) and not call[4]:
            again.append((*call[:4], True))
        elif isinstance(result, Exception):
            done.set_exception(result)
        else:
            done.set_result(result)

    async def _resend(self, calls: list[Call]) -> None:
        """Load the scripts again (Redis lost them) and send the calls once more."""
        try:
            for script in list(self._scripts.values()):  # roles may register more meanwhile
                await self._client.script_load(script.script)
        except Exception as exc:
            _fail([calls], exc)
            return
        self._send(calls)


def _fail(batches: list[list[Call]], exc: BaseException) -> None:
    for batch in batches:
        for call in batch:
            if not call[3].done():
                call[3].set_exception(exc)


async def _discard(pool: Any, conn: Any) -> None:
    await conn.disconnect()
    await pool.release(conn)
