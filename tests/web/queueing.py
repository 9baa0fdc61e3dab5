"""Test helpers for the admin operations pages: a deferred message (routed to a closed loopback port) and tokens by role."""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy import update

from delivery.queue import NewEntry, new_queue_id
from delivery.routes import Routes
from delivery.worker import Worker
from mailboxes import schema as t
from mailboxes.apitokens import ApiTokens

SETTLE_TIMEOUT = 30.0  # generous: a refused loopback connection settles in milliseconds


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deferred_message(web, rcpt: str = "someone@far.test") -> str:
    """Queue a message to `rcpt` whose domain is routed to a closed port; returns its queue id once the
    running server's worker has tried it once (a refused connection: a temporary failure, so it stays queued)."""
    async def go() -> str:
        worker = next(s for s in web.services if isinstance(s, Worker))
        await Routes(web.mb.router.central).add(rcpt.rpartition("@")[2], f"127.0.0.1:{closed_port()}", tls="none")
        qid = new_queue_id()
        worker.settled.clear()
        await worker.queue.enqueue(NewEntry(qid, "alice@city.test", (rcpt,),
                                            b"From: alice@city.test\r\nSubject: far away\r\n\r\nhello\r\n"))
        await asyncio.wait_for(worker.settled.wait(), SETTLE_TIMEOUT)  # its first attempt was settled
        return qid
    return web.run(go())


async def _set_role(web, address: str, role: str):
    acct = await web.mb.directory.account(address)
    async with web.mb.router.central.write() as conn:
        await conn.execute(update(t.accounts).where(t.accounts.c.id == acct.id).values(role=role))
    return acct


def set_role(web, address: str, role: str) -> None:
    """Give `address` the role `role` (admin, department_admin, user)."""
    web.run(_set_role(web, address, role))


def token(web, address: str, role: str) -> str:
    """An API token owned by `address`, whose role is set to `role`."""
    async def go() -> str:
        acct = await _set_role(web, address, role)
        secret, _ = await ApiTokens(web.mb.router.central).create(acct.id, label="test")
        return secret
    return web.run(go())
