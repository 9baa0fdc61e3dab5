"""Carry change events between nodes that share PostgreSQL: NOTIFY in the writing transaction, LISTEN on the others.

NOTIFY is transactional: PostgreSQL delivers it only when the transaction
that issued it commits, so "commit first, then broadcast" holds across nodes
too. Each node tags its notifications with its node id and ignores its own
(it has already published them on its in-process bus).

When the LISTEN connection drops (a database restart, a failover, a killed
backend) the relay connects again after RECONNECT_SECONDS; notifications
sent in between are lost, so once it listens again it tells every local
listener of this database's folders to look again (a "folder" event: IDLE
re-reads the folder, its rights and what changed since its MODSEQ).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from .changes import WAKE, ChangeBus, FolderChanged
from .model import FolderRef

log = logging.getLogger(__name__)

CHANNEL = "postroom_changes"
RECONNECT_SECONDS = 1.0


def new_node_id() -> str:
    return uuid.uuid4().hex[:12]


def _notify_sql(node: str, event: FolderChanged):
    payload = f"{node}:{event.folder.partition}:{event.folder.id}:{event.highestmodseq}:{event.kind}"
    return text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload}


async def notify(conn: AsyncConnection, node: str, event: FolderChanged) -> None:
    """Queue a notification in the current transaction (PostgreSQL only; a no-op elsewhere)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(*_notify_sql(node, event))


def notify_sync(conn: Connection, node: str, events: list[FolderChanged]) -> None:
    """`notify` of several events on a synchronous connection, in one statement."""
    if conn.dialect.name == "postgresql" and events:
        payloads = [_notify_sql(node, e)[1]["p"] for e in events]
        conn.execute(text("SELECT pg_notify(:c, p) FROM unnest(CAST(:ps AS text[])) AS p"),
                     {"c": CHANNEL, "ps": payloads})


def wake_sync(conn: Connection, node: str, topic: str) -> None:
    """Inside a writing transaction: wake `topic`'s workers on the other nodes at commit (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": f"{node}:{WAKE}:{topic}"})


def parse(payload: str) -> tuple[str, FolderChanged | str] | None:
    """(node, the folder change) or (node, a wake-up's topic); None when malformed."""
    try:
        if payload.count(":") == 2:
            node, wake, topic = payload.split(":")
            return (node, topic) if wake == WAKE and node and topic else None
        node, partition, fid, modseq, kind = payload.split(":", 4)
        ref = FolderRef(partition, int(fid))
        return node, FolderChanged(ref, int(modseq), kind)
    except ValueError:
        return None


class Relay:
    """LISTENs on one PostgreSQL database and republishes other nodes' events on the local bus."""

    def __init__(self, url: str, bus: ChangeBus, node: str, partition: str = "main") -> None:
        u = make_url(url)
        self._dsn = dict(host=u.host, port=u.port, user=u.username, password=u.password, database=u.database)
        self._bus = bus
        self._node = node
        self._partition = partition
        self.connects = 0  # LISTEN connections made so far (tests watch the reconnect)
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-change-relay")

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        parsed = parse(payload)
        if parsed is None:
            log.warning("ignoring malformed change notification %r", payload[:200])
            return
        node, event = parsed
        if node == self._node:
            return
        if isinstance(event, str):
            self._bus.wake_here(event)
        else:
            self._bus.publish(event.folder, event)

    async def _run(self) -> None:
        import asyncpg
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(**self._dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                self.connects += 1
                if self.connects > 1:
                    self._resync()
                self.ready.set()
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c: closed.set())
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep relaying after a database restart
                log.warning("change relay lost its connection (%s); reconnecting", exc)
            finally:
                self.ready.clear()
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _resync(self) -> None:
        """After a gap in listening: every local listener of this database's folders looks again."""
        for key in self._bus.keys():
            if isinstance(key, FolderRef) and key.partition == self._partition:
                self._bus.publish(key, FolderChanged(key, 0, "folder"))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
