"""Storage roles: an extension's own storage on both backends, through the backend access
the core makes public (``Engine`` for SQLite, ``RedisBackend`` for Redis).

A small role of its own ("notes") stands in for an extension's: it shows what the portal's
roles will look like and proves the mechanism without the webhooks package.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Protocol

import pytest

from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.ids import new_id
from gateway.models import Team
from gateway.process import open_runtime
from gateway.store import make_store
from gateway.store.base import Store
from gateway.store.redis import RedisStore
from gateway.store.redis_backend import RedisBackend
from gateway.store.roles import Role
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_engine import Engine
from tests.conftest import store_url

pytestmark = pytest.mark.anyio


class Notes(Protocol):
    """The test role: texts by key, and a counter of writes."""

    async def put(self, key: str, text: str) -> int:
        """Store ``text`` under ``key``; the number of puts so far (atomically)."""
        ...

    async def get(self, key: str) -> str | None:
        """The text under ``key``, or None."""
        ...


STEPS = (
    "CREATE TABLE IF NOT EXISTS notes_texts (key TEXT PRIMARY KEY, text TEXT NOT NULL);",
    "CREATE TABLE IF NOT EXISTS notes_count (n INTEGER NOT NULL);"
    "INSERT INTO notes_count VALUES (0);",
)


class SqliteNotes:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, engine: Engine) -> SqliteNotes:
        await engine.migrate("notes", STEPS)
        return cls(engine)

    async def put(self, key: str, text: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute("INSERT OR REPLACE INTO notes_texts VALUES (?, ?)", (key, text))
            (n,) = db.execute("UPDATE notes_count SET n = n + 1 RETURNING n").fetchone()
            return int(n)

        return await self._engine.write(work)

    async def get(self, key: str) -> str | None:
        row = self._engine.conn.execute(
            "SELECT text FROM notes_texts WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])


class RedisNotes:
    SCRIPTS = {
        "notes_put": "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCR', KEYS[2])"
    }

    def __init__(self, backend: RedisBackend) -> None:
        self._b = backend

    @classmethod
    async def open(cls, backend: RedisBackend) -> RedisNotes:
        backend.register_scripts(cls.SCRIPTS)
        return cls(backend)

    async def put(self, key: str, text: str) -> int:
        keys = [self._b.key("notes", key), self._b.key("notes:count")]
        return int(await self._b.call_batched("notes_put", keys, [text]))

    async def get(self, key: str) -> str | None:
        value = await self._b.client.get(self._b.key("notes", key))
        return None if value is None else str(value)


async def _sqlite(engine: Engine) -> Notes:
    return await SqliteNotes.open(engine)


async def _redis(backend: RedisBackend) -> Notes:
    return await RedisNotes.open(backend)


NOTES: Role[Notes] = Role("notes", sqlite=_sqlite, redis=_redis)


@pytest.fixture
async def notes(store: Store) -> Notes:
    """The role on the store under test."""
    return await NOTES.open(store)


async def test_the_role_opens_on_the_running_backend(
    store: Store, notes: Notes, backend: str
) -> None:
    kind = SqliteNotes if backend == "sqlite" else RedisNotes
    assert isinstance(notes, kind)
    assert await notes.get("a") is None
    assert await notes.put("a", "one") == 1
    assert await notes.put("b", "two") == 2
    assert (await notes.get("a"), await notes.get("b")) == ("one", "two")


async def test_concurrent_writes_count_once_each_beside_core_writes(
    store: Store, notes: Notes, clock: FrozenClock
) -> None:
    team = Team(new_id("team"), "Acme", "business", 0, "DE", clock.now())
    counts = await asyncio.gather(
        *(notes.put(f"k{i}", str(i)) for i in range(20)), store.create_team(team)
    )
    assert sorted(counts[:20]) == list(range(1, 21))
    assert await store.get_team(team.id) == team


async def test_a_second_process_opens_the_same_data(store: Store, notes: Notes, url: str) -> None:
    await notes.put("shared", "yes")
    other = make_store(url)
    await other.open()
    try:
        again = await NOTES.open(other)  # its migrations and scripts are there already
        assert await again.get("shared") == "yes"
        assert await again.put("more", "x") == 2
    finally:
        await other.aclose()


async def test_sqlite_steps_run_once_each(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path}/gw.db")
    await store.open()
    try:
        engine = store.engine
        await engine.migrate("notes", STEPS[:1])
        await engine.migrate("notes", STEPS[:1])  # nothing new
        tables = "SELECT name FROM sqlite_master WHERE name LIKE 'notes_%' ORDER BY name"
        assert engine.conn.execute(tables).fetchall() == [("notes_texts",)]
        assert engine.conn.execute("SELECT done FROM schema_steps").fetchall() == [(1,)]
        await engine.migrate("notes", STEPS)  # a release that appended a step
        await engine.migrate("notes", STEPS)
        assert engine.conn.execute("SELECT n FROM notes_count").fetchall() == [(0,)]  # once
        assert engine.conn.execute("SELECT done FROM schema_steps").fetchall() == [(2,)]
        await engine.migrate("notes", STEPS[:1])  # an older version: left as it is
        assert engine.conn.execute("SELECT done FROM schema_steps").fetchall() == [(2,)]
    finally:
        await store.aclose()


async def test_a_failing_sqlite_step_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path}/gw.db")
    await store.open()
    try:
        broken = (STEPS[0], "CREATE TABLE notes_more (x TEXT); NOT SQL AT ALL;")
        with pytest.raises(sqlite3.OperationalError):
            await store.engine.migrate("notes", broken)
        conn = store.engine.conn
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'notes_texts'").fetchall()
        await store.engine.migrate("notes", STEPS)  # the fixed release
        assert conn.execute("SELECT done FROM schema_steps WHERE name = 'notes'").fetchone() == (2,)
    finally:
        await store.aclose()


async def test_redis_script_names_are_owned_and_reloaded(redis_url: str, tmp_path: Path) -> None:
    store = make_store(store_url("redis", redis_url, tmp_path))
    await store.open()
    try:
        assert isinstance(store, RedisStore)
        notes = await NOTES.open(store)
        store.backend.register_scripts(RedisNotes.SCRIPTS)  # the same script again: fine
        with pytest.raises(ValueError, match="notes_put"):
            store.backend.register_scripts({"notes_put": "return 1"})
        with pytest.raises(ValueError, match="submit_outbound"):
            store.backend.register_scripts({"submit_outbound": "return 1"})  # the core's
        await store.backend.client.script_flush()  # Redis lost every script (restart, FLUSH)
        assert await notes.put("after", "flush") == 1
    finally:
        await store.aclose()


async def test_an_unknown_store_has_no_implementation() -> None:
    with pytest.raises(TypeError, match="notes"):
        await NOTES.open(object())  # type: ignore[arg-type]


async def test_the_runtime_hands_out_only_the_roles_it_opened(tmp_path: Path) -> None:
    settings = parse_settings(
        {"gateway": {"store": f"sqlite:///{tmp_path}/gw.db", "blobs": str(tmp_path / "b")}}
    )
    rt = await open_runtime(settings)  # the installed extensions' roles, not this one
    try:
        with pytest.raises(LookupError, match="'notes' is not open"):
            rt.role(NOTES)
    finally:
        await rt.aclose()
