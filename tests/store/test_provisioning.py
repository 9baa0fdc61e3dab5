"""Accounts created in bulk (Mailboxes.add_accounts): the same accounts as one by one, and all-or-nothing refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailboxes import errors
from mailboxes import schema as t
from mailboxes.model import Role
from mailboxes.provisioning import BATCH, NewAccount


async def _count(mb, table) -> int:
    async with mb.router.central.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar()


async def test_bulk_accounts_are_what_add_account_makes(mb):
    await mb.directory.add_department("fin", "财务处")
    one = await mb.add_account("one@city.test", password="pw1", display_name="甲", department="fin",
                               role=Role.ADMIN, quota_bytes=10, quota_messages=5)
    [two] = await mb.add_accounts([NewAccount("Two@City.test", "pw2", "甲", "FIN", Role.ADMIN, 10, 5)])
    assert two.address == "two@city.test"
    assert (two.display_name, two.department_id, two.department_code, two.role, two.quota_bytes,
            two.quota_messages, two.enabled) == (one.display_name, one.department_id, one.department_code,
                                                  one.role, one.quota_bytes, one.quota_messages, one.enabled)
    assert await mb.directory.authenticate("two@city.test", "pw2") == two
    assert await mb.directory.authenticate("two@city.test", "pw1") is None

    def shape(folders):
        return sorted((f.name, f.special_use, f.uidnext, f.highestmodseq, f.read_only) for f in folders)

    assert shape(await mb.store.folders(two)) == shape(await mb.store.folders(one))
    assert await mb.store.subscriptions(two) == await mb.store.subscriptions(one)
    uidvalidities = [f.uidvalidity for a in (one, two) for f in await mb.store.folders(a)]
    assert len(set(uidvalidities)) == len(uidvalidities)  # never two folders with one UIDVALIDITY


async def test_more_accounts_than_a_batch_come_back_in_order_with_their_folders(mb):
    n = BATCH + 7
    accts = await mb.add_accounts([NewAccount(f"u{i}@city.test") for i in range(n)])
    assert [a.address for a in accts] == [f"u{i}@city.test" for i in range(n)]
    assert len({a.id for a in accts}) == n
    assert await _count(mb, t.folders) == 6 * n and await _count(mb, t.mailbox_usage) == n
    assert [f.name for f in await mb.store.folders(accts[-1])] == [
        "Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]


@pytest.mark.parametrize("specs, error, words", [
    ([NewAccount("a@city.test"), NewAccount("A@city.test")], errors.AlreadyExists, "a@city.test is listed twice"),
    ([NewAccount("a@city.test"), NewAccount("taken@city.test")], errors.AlreadyExists,
     "taken@city.test is already an account"),
    ([NewAccount("a@city.test"), NewAccount("b@elsewhere.test")], errors.NotFound,
     "domain elsewhere.test is not a local domain"),
    ([NewAccount("a@city.test"), NewAccount("b@city.test", department="Nope")], errors.NotFound,
     "no department Nope"),
    ([NewAccount("a@city.test"), NewAccount("b@city.test", quota_bytes=-1)], errors.InvalidInput,
     "quota cannot be negative"),
    ([NewAccount("a@city.test"), NewAccount("b@city.test", password="")], errors.InvalidInput, "empty password"),
])
async def test_a_list_with_one_bad_entry_creates_nothing(mb, specs, error, words):
    await mb.add_account("taken@city.test", password=None)
    with pytest.raises(error, match=words):
        await mb.add_accounts(specs)
    assert [a.address for a in await mb.directory.list_accounts()] == ["taken@city.test"]
    assert await _count(mb, t.folders) == 6
