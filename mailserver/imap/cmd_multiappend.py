"""Handler for MULTIAPPEND (RFC 3502): several messages in one APPEND, appended in one transaction or not at all."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailboxes.model import split_flags
from mailboxes.store import Delivery

from . import commands as c
from . import responses as r
from .cmd_mailbox import PREPARE_IN_THREAD, allowed_flags, check_keywords, prepare_append, resolve
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
    # The same preparation as APPEND: binary parts and parts holding NUL go in as base64 (RFC 3516 §4.4).
    todo = [(bytes(m.message), m.literal8) for m in cmd.messages]
    if sum(len(raw) for raw, _ in todo) > PREPARE_IN_THREAD:
        prepared = await asyncio.to_thread(lambda: [prepare_append(*one) for one in todo])
    else:
        prepared = [prepare_append(*one) for one in todo]
    batch = []
    for m, p in zip(cmd.messages, prepared):
        bits, keywords = allowed_flags(mb, *split_flags(list(m.flags)))
        check_keywords(keywords)
        batch.append(Delivery(p, (), bits, tuple(keywords), m.internal_date))
    results = await s.services.store.append_many(mb.owner, mb.folder.ref, batch)
    uids = c.SequenceSet.from_ints(res.uid for res in results)
    return Ok("APPEND completed", r.Code.appenduid(results[0].uidvalidity, uids))
