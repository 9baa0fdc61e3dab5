"""Store.append_many (IMAP MULTIAPPEND, RFC 3502): one transaction, consecutive UIDs, all or nothing; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mailboxes import errors
from mailboxes.ingest import prepare
from mailboxes.model import Flag
from mailboxes.store import Delivery

from .test_store import make_message


def batch(*subjects: str, pad: int = 0) -> list[Delivery]:
    return [Delivery(prepare(make_message(s, size_pad=pad)), ()) for s in subjects]


async def test_append_many_gives_consecutive_uids_flags_and_dates(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    inbox = await mb.store.folder(acct, "INBOX")
    await mb.store.append(acct, "INBOX", prepare(make_message("before")))
    when = datetime(2026, 3, 4, 9, 15, tzinfo=timezone.utc)
    items = [Delivery(prepare(make_message("one")), (), int(Flag.SEEN), ("$Work",), when),
             *batch("two", "three")]
    res = await mb.store.append_many(acct, inbox.ref, items)
    assert [r.uid for r in res] == [2, 3, 4] and {r.uidvalidity for r in res} == {inbox.uidvalidity}
    metas = await mb.store.messages(inbox.ref)
    assert [m.uid for m in metas] == [1, 2, 3, 4]
    assert len({m.modseq for m in metas[1:]}) == 1  # one write, one MODSEQ
    assert metas[1].flags == int(Flag.SEEN) and metas[1].keywords == {"$Work"} and metas[1].internal_date == when
    assert (await mb.store.quota(acct)).used_messages == 4


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["messages", "bytes"])
async def test_append_many_is_all_or_nothing(mb, limit):
    kw = {"quota_messages": 2} if limit == "messages" else {"quota_bytes": 4000}
    acct = await mb.add_account("q@city.test", password="pw", **kw)
    inbox = await mb.store.folder(acct, "INBOX")
    with pytest.raises(errors.OverQuota):
        await mb.store.append_many(acct, inbox.ref, batch("a", "b", "c", pad=1500))
    assert await mb.store.messages(inbox.ref) == []
    q = await mb.store.quota(acct)
    assert (q.used_messages, q.used_bytes) == (0, 0)
    folder = await mb.store.folder(acct, "INBOX")
    assert folder.uidnext == inbox.uidnext and folder.highestmodseq == inbox.highestmodseq  # nothing moved
    res = await mb.store.append_many(acct, inbox.ref, batch("a", "b", pad=1500))
    assert [r.uid for r in res] == [1, 2]
