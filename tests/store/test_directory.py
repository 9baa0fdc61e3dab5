"""The directory on SQLite and PostgreSQL: accounts, passwords and app passwords, aliases, groups, resolution."""

from __future__ import annotations

import pytest

from mailboxes import errors
from mailboxes.ingest import prepare
from mailboxes.model import Role
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from tests.store.test_store import make_message


async def test_passwords_are_argon2_and_app_passwords_work(mb):
    d = mb.directory
    acct = await mb.add_account("wang@city.test", password="correct horse", display_name="王芳", role=Role.ADMIN)
    async with d.db.read() as conn:
        from sqlalchemy import text
        h = (await conn.execute(text("SELECT password_hash FROM accounts"))).scalar()
    assert h.startswith("$argon2id$") and "correct horse" not in h
    assert (await d.authenticate("WANG@city.test", "correct horse")).id == acct.id
    assert await d.authenticate("wang@city.test", "wrong") is None
    assert await d.authenticate("nobody@city.test", "correct horse") is None
    app = await d.add_app_password("wang@city.test", "Thunderbird")
    app_id_shown, secret = app.split("-")
    assert len(secret) == 20 and int(app_id_shown) > 0  # `<id>-<secret>`: found without trying every hash
    assert (await d.authenticate("wang@city.test", app)).id == acct.id
    [(app_id, label, used)] = await d.list_app_passwords("wang@city.test")
    assert label == "Thunderbird" and used is not None
    await d.revoke_app_password("wang@city.test", app_id)
    assert await d.authenticate("wang@city.test", app) is None
    await d.set_enabled("wang@city.test", False)
    assert await d.authenticate("wang@city.test", "correct horse") is None


async def test_internationalised_local_parts_and_validation(mb):
    acct = await mb.add_account("张伟@city.test", password="pw")
    assert acct.address == "张伟@city.test"
    for bad in ("no-at-sign", "a@", "@city.test", "a b@city.test", "a@city..test"):
        with pytest.raises(errors.InvalidInput):
            await mb.directory.add_account(bad, password="pw")
    with pytest.raises(errors.NotFound, match="not a local domain"):
        await mb.directory.add_account("x@other.test", password="pw")
    with pytest.raises(errors.AlreadyExists):
        await mb.directory.add_account("ZHANG伟@city.test".replace("ZHANG", "张"), password="pw")


async def test_department_tree(mb):
    d = mb.directory
    await d.add_department("bureau", "市税务局", kind="bureau")
    await d.add_department("office", "办公室", parent="bureau")
    await d.add_department("east", "东区税务局", parent="bureau", kind="district")
    deps = {x.code: x for x in await d.list_departments()}
    assert deps["office"].parent_id == deps["bureau"].id and deps["east"].kind == "district"
    with pytest.raises(errors.NotFound):
        await d.add_department("x", "X", parent="missing")
    with pytest.raises(errors.InvalidInput):
        await d.add_department("bad code!", "X")
    acct = await mb.add_account("a@city.test", password=None, department="office")
    assert acct.department_code == "office"
    assert [a.address for a in await d.list_accounts(department="office")] == ["a@city.test"]


async def test_resolution_expands_aliases_and_nested_groups_without_duplicates(mb):
    d = mb.directory
    a = await mb.add_account("a@city.test", password=None)
    b = await mb.add_account("b@city.test", password=None)
    await mb.add_account("c@city.test", password=None)
    await d.set_enabled("c@city.test", False)
    await d.add_alias("boss@city.test", "a@city.test")
    await d.add_group("office@city.test", "办公室")
    await d.set_group_members("office@city.test", add=["a@city.test", "b@city.test", "c@city.test"])
    await d.add_group("all@city.test", "全体")
    await d.set_group_members("all@city.test", add=["office@city.test", "boss@city.test", "ext@partner.test",
                                                    "all@city.test"])
    r = await d.resolve("all@city.test")
    assert sorted(x.address for x in r.local) == [a.address, b.address]  # c is disabled, a once
    assert r.remote == ("ext@partner.test",)
    assert [x.id for x in (await d.resolve("boss@city.test")).local] == [a.id]
    assert await d.resolve("nobody@city.test") is None
    assert (await d.resolve("someone@partner.test")).remote == ("someone@partner.test",)
    with pytest.raises(errors.AlreadyExists):
        await d.add_alias("a@city.test", "b@city.test")  # taken by an account


async def test_group_posting_policies_and_sender_addresses(mb):
    d = mb.directory
    a = await mb.add_account("a@city.test", password=None)
    await mb.add_account("b@city.test", password=None)
    for policy in ("anyone", "domain", "members", "posters"):
        await d.add_group(f"{policy}@city.test", post_policy=policy)
        await d.set_group_members(f"{policy}@city.test", add=["b@city.test"])
    await d.set_group_members("posters@city.test", add=["a@city.test"], posters=True)
    assert await d.may_post("anyone@city.test", None)
    assert not await d.may_post("domain@city.test", None)
    assert await d.may_post("domain@city.test", "a@city.test")
    assert not await d.may_post("domain@city.test", "x@partner.test")
    assert await d.may_post("members@city.test", "b@city.test")
    assert not await d.may_post("members@city.test", "a@city.test")
    assert await d.may_post("posters@city.test", "a@city.test")
    assert not await d.may_post("posters@city.test", "b@city.test")
    await d.add_alias("chief@city.test", "a@city.test")
    assert await d.sender_addresses(a) == {"a@city.test", "chief@city.test", "posters@city.test"}


async def test_removing_an_account_cleans_up_memberships(mb):
    d = mb.directory
    await mb.add_account("a@city.test", password="pw")
    await d.add_group("g@city.test")
    await d.set_group_members("g@city.test", add=["a@city.test"])
    await d.remove_account("a@city.test")
    assert (await d.group("g@city.test")).members == ()
    with pytest.raises(errors.NotFound):
        await d.account("a@city.test")


async def test_audit_log_records_actions(mb):
    await mb.directory.audit("cli:root", "user.add", "a@city.test", role="user")
    [entry] = await mb.directory.audit_entries()
    assert (entry["actor"], entry["action"], entry["target"]) == ("cli:root", "user.add", "a@city.test")
    assert '"role": "user"' in entry["detail"]


async def test_blob_directory_mode_stores_files_once(tmp_path, storage_url):
    mb = await open_mailboxes(StorageConfig(url=storage_url, blob_dir=str(tmp_path / "blobs")), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        a = await mb.add_account("a@city.test", password=None)
        b = await mb.add_account("b@city.test", password=None)
        raw = make_message("file blob") + b"broken --boundary\r\nno mime at all \xff\r\n"
        from mailboxes.store import Delivery
        res = await mb.store.deliver(Delivery(prepare(raw), ((a, "INBOX"), (b, "INBOX"))))
        files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert len(files) == 1 and files[0].read_bytes() == raw
        meta = (await mb.store.messages(res.results[1].folder))[0]
        assert await mb.store.raw(res.results[1].folder.partition, meta.blob_id) == raw
    finally:
        await mb.close()


async def test_a_domain_is_added_once_in_its_normal_form(mb):
    """mb has city.test already: the same domain in another spelling is refused and nothing is added."""
    with pytest.raises(errors.AlreadyExists, match="domain city.test already exists"):
        await mb.directory.add_domain("City.Test")
    added = await mb.directory.add_domain("District.City.Test")
    assert added.name == "district.city.test"
    assert [d.name for d in await mb.directory.list_domains()] == ["city.test", "district.city.test"]
    assert added.id == [d.id for d in await mb.directory.list_domains()][1]
