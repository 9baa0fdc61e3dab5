"""Password checks in the directory: one Argon2 verification per attempt, app passwords by id, rehash, credentials."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert, select

from mailboxes import schema as t
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.support.hashers import counting


async def _open(url, hasher):
    return await open_mailboxes(StorageConfig(url=url), hasher=hasher)


@pytest.fixture
async def counted(storage_url):
    """(mailboxes with city.test and wang@city.test, its counting hasher)."""
    h = counting()
    mb = await _open(storage_url, h)
    await mb.directory.add_domain("city.test")
    await mb.add_account("wang@city.test", password="correct horse")
    yield mb, h
    await mb.close()


async def test_every_attempt_costs_one_verification_whoever_it_names(counted):
    mb, h = counted
    d = mb.directory
    await mb.add_account("off@city.test", password="correct horse")
    await mb.add_account("nopw@city.test", password=None)
    await d.set_enabled("off@city.test", False)
    for _ in range(3):  # app passwords do not add to the cost of a wrong password
        await d.add_app_password("wang@city.test", "phone")
    for user, pw in (("wang@city.test", "wrong"), ("nobody@city.test", "wrong"), ("off@city.test", "correct horse"),
                     ("nopw@city.test", "x"), ("not an address", "x"), ("wang@city.test", "99-" + "a" * 20),
                     ("nobody@city.test", "1-" + "a" * 20), ("wang@city.test", "9" * 18 + "-" + "a" * 20),
                     ("wang@city.test", "correct horse")):
        h.reset()
        result = await d.check_password(user, pw)
        assert h.verifications == 1, (user, pw)
        assert (result is not None) == (pw == "correct horse" and user == "wang@city.test")


async def test_app_passwords_are_found_by_id_and_old_ones_still_work(counted):
    mb, h = counted
    d = mb.directory
    acct = await d.account("wang@city.test")
    apps = [await d.add_app_password("wang@city.test", f"device {i}") for i in range(4)]
    h.reset()
    v = await d.check_password("wang@city.test", apps[3])
    assert v.account.id == acct.id and v.credential.app_id == int(apps[3].split("-")[0])
    assert h.verifications == 1  # not one per app password
    other = await mb.add_account("li@city.test", password="pw")
    assert await d.check_password("li@city.test", apps[0]) is None  # another account's id names nothing
    # An app password issued before they carried their id: 20 hex characters, hashed as they are.
    legacy = "0123456789abcdef0123"
    async with d.db.write() as conn:
        await conn.execute(insert(t.app_passwords).values(account_id=acct.id, label="old", created_at=d.clock(),
                                                          password_hash=h.hash(legacy)))
    v = await d.check_password("WANG@city.test", legacy)
    assert v is not None and v.account.id == acct.id and v.credential.app_id is not None
    assert await d.check_password("li@city.test", legacy) is None
    assert other.id != acct.id


async def test_hashes_are_redone_at_login_when_the_cost_changes(storage_url):
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    mb = await _open(storage_url, old)
    try:
        await mb.directory.add_domain("city.test")
        await mb.add_account("wang@city.test", password="correct horse")
        app = await mb.directory.add_app_password("wang@city.test", "phone")
    finally:
        await mb.close()
    new = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    mb = await _open(storage_url, new)
    try:
        d = mb.directory
        v = await d.check_password("wang@city.test", "correct horse")
        w = await d.check_password("wang@city.test", app)
        async with d.db.read() as conn:
            main = (await conn.execute(select(t.accounts.c.password_hash))).scalar_one()
            app_hash = (await conn.execute(select(t.app_passwords.c.password_hash))).scalar_one()
        assert not new.check_needs_rehash(main) and not new.check_needs_rehash(app_hash)
        assert v.credential.hash == main and w.credential.hash == app_hash
        assert await d.credential_account(v.credential) is not None  # the rehash is what the cache checks
        assert (await d.check_password("wang@city.test", "correct horse")) is not None
    finally:
        await mb.close()


async def test_a_credential_ends_with_every_change_on_any_node(storage_url):
    mb = await _open(storage_url, counting())
    other = await _open(storage_url, counting())  # a second node on the same directory
    try:
        d, d2 = mb.directory, other.directory
        await d.add_domain("city.test")
        await mb.add_account("wang@city.test", password="correct horse")
        app = await d.add_app_password("wang@city.test", "phone")
        pw = (await d.check_password("wang@city.test", "correct horse")).credential
        ap = (await d.check_password("wang@city.test", app)).credential
        assert (await d.credential_account(pw)).address == "wang@city.test"
        assert await d.credential_account(ap) is not None
        [(app_id, _, _)] = await d2.list_app_passwords("wang@city.test")
        await d2.revoke_app_password("wang@city.test", app_id)
        assert await d.credential_account(ap) is None and await d.credential_account(pw) is not None
        await d2.set_password("wang@city.test", "correct horse")  # even the same password: a new hash
        assert await d.credential_account(pw) is None
        pw = (await d.check_password("wang@city.test", "correct horse")).credential
        await d2.set_enabled("wang@city.test", False)
        assert await d.credential_account(pw) is None
        await d2.set_enabled("wang@city.test", True)
        pw = (await d.check_password("wang@city.test", "correct horse")).credential
        await d2.remove_account("wang@city.test")
        assert await d.credential_account(pw) is None
    finally:
        await other.close()
        await mb.close()
