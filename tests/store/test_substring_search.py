"""The substring index on SQLite and PostgreSQL: BODY is the body, TEXT every header field and the body (RFC 3501 §6.4.4)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import bindparam, text

from mailboxes import migrations, search, substring
from mailboxes.ingest import prepare
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER

from .test_store import make_message


def _raw(subject: str, body: str, extra: str = "") -> bytes:
    raw = make_message(subject, body, sender="Zhang San <zhangsan@city.test>")
    return extra.encode() + raw


async def test_body_text_and_substrings(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    await mb.store.append(acct, "INBOX", prepare(_raw("Keyboard rows", "home row asdfghjkl", "X-Ticket: Nr-8812\r\n")))
    await mb.store.append(acct, "INBOX", prepare(_raw("关于税收工作的通知", "请各部门于本周五前报送材料。")))
    await mb.store.append(acct, "INBOX", prepare(_raw("zxcvbnm", "Bottom row ZXCVBNM.")))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    find = mb.store.search_substring
    assert await find(ref, "text", "sdfghjk") == {1}
    assert await find(ref, "body", "XCVBN") == {3}
    assert await find(ref, "text", "xcvbn") == {3}
    assert await find(ref, "body", "keyboard") == set()  # the subject is not the body
    assert await find(ref, "body", "zhangsan") == set()  # nor are the addresses
    assert await find(ref, "text", "nr-88") == {1}  # any header field
    assert await find(ref, "text", "x-ticket") == {1}
    assert await find(ref, "text", "zhangsan@city") == {1, 2, 3}
    assert await find(ref, "body", "报送材") == {2}  # three characters: trigrams
    assert await find(ref, "body", "报送") == {2}  # two: the word index's bigrams
    assert await find(ref, "body", "税") == set()  # in the subject only
    assert await find(ref, "text", "税") == {2}
    assert await find(ref, "body", "jk") == {1}  # two Latin letters: a scan of the stored text
    assert await find(ref, "body", "q") == set()
    assert await find(ref, "body", "sdfghjkq") == set()
    assert await find(ref, "body", "%") == set() and await find(ref, "body", "_o") == set()  # LIKE specials


async def test_a_body_past_the_cut_is_found_by_its_words(mb):
    acct = await mb.add_account("a@city.test", password="pw")
    body = "filler " * (substring.BODY_CHARS // 7 + 10) + "tailword here"
    await mb.store.append(acct, "INBOX", prepare(_raw("Long", body)))
    ref = (await mb.store.folder(acct, "INBOX")).ref
    assert await mb.store.search_substring(ref, "body", "tailwo") == {1}
    assert await mb.store.search_substring(ref, "body", "ailwor") == set()  # documented: mid-word past the cut


async def test_upgrade_reindexes_mail_stored_before_the_substring_index(storage_url):
    """mai0004 rebuilds both indexes: old body rows held the subject, and there were no substring rows."""
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("a@city.test", password="pw")
        p = prepare(_raw("Zebra subject", "plain words asdfghjkl", "X-Tag: Marker\r\n"))
        await mb.store.append(acct, "INBOX", p)
        db = await mb.router.database(mb.store.home(acct))
        await mb.store.catch_up_index(mb.store.home(acct))  # the background indexer is done before the downgrade
        async with db.migrating() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrations.alembic_config("mail", c), "mai0003"))
            bid = (await conn.execute(text("SELECT id FROM blobs"))).scalar()
            await conn.execute(text(search.delete_sql(db.dialect)).bindparams(bindparam("ids", expanding=True)),
                               {"ids": [bid]})
            old_body = f"{p.subject} {p.addrs} {p.body_text}"  # what ingest stored before
            await conn.execute(text(search.insert_sql(db.dialect)),
                               search.row_params([(bid, p.subject, p.addrs, old_body)]))
            sql, params = search.blob_match_sql(db.dialect, "body", "zebra")  # the old body column, read directly:
            assert (await conn.execute(text(sql), params)).scalars().all() == [bid]  # (catch-up needs mai0012)
    finally:
        await mb.close()
    mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)  # upgrades: mai0004
    try:
        acct = await mb.directory.account("a@city.test")
        ref = (await mb.store.folder(acct, "INBOX")).ref
        assert await mb.store.search_text(ref, "body", "zebra") == set()
        assert await mb.store.search_substring(ref, "body", "zebra") == set()
        assert await mb.store.search_substring(ref, "text", "ebra subj") == {1}
        assert await mb.store.search_substring(ref, "body", "sdfghjk") == {1}
        assert await mb.store.search_substring(ref, "text", "marker") == {1}
    finally:
        await mb.close()
