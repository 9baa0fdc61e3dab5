"""Folder ACLs and shared folders (RFC 4314 rights) on SQLite and a real PostgreSQL."""

from __future__ import annotations

import pytest

from mailboxes import acl, errors
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER


@pytest.fixture
async def mb(storage_url):
    m = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    await m.directory.add_domain("city.test")
    yield m
    await m.close()


async def test_owner_has_all_rights_and_others_none(mb):
    owner = await mb.add_account("docs@city.test", password="pw")
    other = await mb.add_account("clerk@city.test", password="pw")
    inbox = await mb.store.folder(owner, "INBOX")
    assert await acl.rights_for(mb.store, owner, inbox) == acl.ALL_RIGHTS
    assert await acl.rights_for(mb.store, other, inbox) == ""
    assert await acl.get_acl(mb.store, inbox) == [("docs@city.test", acl.ALL_RIGHTS)]
    assert await acl.shared_with(mb.store, other) == []


async def test_set_add_remove_delete_rights(mb):
    owner = await mb.add_account("docs@city.test", password="pw")
    other = await mb.add_account("Clerk@City.test", password="pw")
    inbox = await mb.store.folder(owner, "INBOX")
    assert await acl.set_rights(mb.store, inbox, "clerk@city.test", "rl") == "lr"
    assert await acl.set_rights(mb.store, inbox, "CLERK@city.test", "sw", "add") == "lrsw"
    assert await acl.set_rights(mb.store, inbox, "clerk@city.test", "w", "remove") == "lrs"
    assert await acl.rights_for(mb.store, other, inbox) == "lrs"
    assert ("clerk@city.test", "lrs") in await acl.get_acl(mb.store, inbox)
    shared = await acl.shared_with(mb.store, other)
    assert [(s.owner.address, s.folder.name, s.rights) for s in shared] == [("docs@city.test", "INBOX", "lrs")]
    # removing every right removes the entry (RFC 4314 §3.1)
    assert await acl.set_rights(mb.store, inbox, "clerk@city.test", "lrs", "remove") == ""
    assert await acl.get_acl(mb.store, inbox) == [("docs@city.test", acl.ALL_RIGHTS)]
    await acl.set_rights(mb.store, inbox, "clerk@city.test", "lr")
    await acl.delete_rights(mb.store, inbox, "clerk@city.test")
    assert await acl.rights_for(mb.store, other, inbox) == ""


async def test_obsolete_rights_and_bad_input(mb):
    owner = await mb.add_account("docs@city.test", password="pw")
    await mb.add_account("clerk@city.test", password="pw")
    inbox = await mb.store.folder(owner, "INBOX")
    assert await acl.set_rights(mb.store, inbox, "clerk@city.test", "lrcd") == "lrkxte"  # RFC 4314 §2.1.1
    with pytest.raises(errors.InvalidInput):
        await acl.set_rights(mb.store, inbox, "clerk@city.test", "lrz")
    with pytest.raises(errors.NotFound):
        await acl.set_rights(mb.store, inbox, "nobody@city.test", "lr")
    with pytest.raises(errors.InvalidInput):
        await acl.set_rights(mb.store, inbox, "docs@city.test", "l")  # the owner's rights are fixed


async def test_anyone_and_group_identifiers(mb):
    owner = await mb.add_account("docs@city.test", password="pw")
    clerk = await mb.add_account("clerk@city.test", password="pw")
    guest = await mb.add_account("guest@city.test", password="pw")
    box = await mb.store.create_folder(owner, "收文/2026")
    await mb.directory.add_group("office@city.test", "Office")
    await mb.directory.set_group_members("office@city.test", add=["clerk@city.test"])
    await acl.set_rights(mb.store, box, "office@city.test", "lrswi")
    await acl.set_rights(mb.store, box, "anyone", "l")
    assert await acl.rights_for(mb.store, clerk, box) == "lrswi"
    assert await acl.rights_for(mb.store, guest, box) == "l"
    got = await acl.shared_folder(mb.store, clerk, "docs@city.test", "收文/2026")
    assert got.folder.id == box.id and got.rights == "lrswi"
    with pytest.raises(errors.NotFound):  # no "l": invisible, not "forbidden"
        await acl.shared_folder(mb.store, clerk, "docs@city.test", "INBOX")
    names = [(s.folder.name, s.rights) for s in await acl.shared_with(mb.store, guest)]
    assert names == [("收文/2026", "l")]


async def test_acl_entries_go_with_the_folder(mb):
    owner = await mb.add_account("docs@city.test", password="pw")
    clerk = await mb.add_account("clerk@city.test", password="pw")
    box = await mb.store.create_folder(owner, "Incoming")
    await acl.set_rights(mb.store, box, "clerk@city.test", "lr")
    await mb.store.delete_folder(owner, "Incoming")
    assert await acl.shared_with(mb.store, clerk) == []
