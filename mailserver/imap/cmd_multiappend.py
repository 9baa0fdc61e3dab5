"""Handler for MULTIAPPEND (RFC 3502): several messages in one APPEND, appended in one transaction or not at all."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailboxes.ingest import prepare
from mailboxes.model import split_flags
from mailboxes.store import Delivery

from . import commands as c
from . import responses as r
from .cmd_mailbox import PREPARE_IN_THREAD, allowed_flags, resolve
from .states import Bad, No, Ok

if TYPE_CHECKING:
    from .session import Session


async def multiappend(s: Session, tag: str, cmd: c.MultiAppend) -> Ok:  # RFC 3502 §3, RFC 4315 §3 APPENDUID
    """All literals are in (the parser reads the whole command, bounded by APPENDLIMIT); then one transaction."""
    if any(m.utf8 for m in cmd.messages) and not s.utf8:
        raise Bad("APPEND UTF8 needs ENABLE UTF8=ACCEPT")  # RFC 6855 §4
    if not all(m.message for m in cmd.messages):  # RFC 3502 §3: a zero-length literal cancels the command
        raise No("Empty message: nothing appended", r.CANNOT)
    mb = await resolve(s, cmd.mailbox, need="i", trycreate=True)
    raws = [bytes(m.message) for m in cmd.messages]
    if sum(map(len, raws)) > PREPARE_IN_THREAD:
        prepared = await asyncio.to_thread(lambda: [prepare(raw) for raw in raws])
    else:
        prepared = [prepare(raw) for raw in raws]
    batch = []
    for m, p in zip(cmd.messages, prepared):
        bits, keywords = allowed_flags(mb, *split_flags(list(m.flags)))
        batch.append(Delivery(p, (), bits, tuple(keywords), m.internal_date))
    results = await s.services.store.append_many(mb.owner, mb.folder.ref, batch)
    uids = c.SequenceSet.from_ints(res.uid for res in results)
    return Ok("APPEND completed", r.Code.appenduid(results[0].uidvalidity, uids))
