"""Deleted mail leaves nothing behind (issue 7.7): EXPUNGE and DELETE remove bodies and search rows, quota drops back."""

from __future__ import annotations

import contextlib
import imaplib
import re
import uuid

import pytest
from sqlalchemy import func, select, text

from mailboxes import schema as t

from .harness import PASSWORD, ImapServer, message


@pytest.fixture
def srv(tmp_path, storage_url):
    s = ImapServer(tmp_path, storage_url=storage_url).start()
    s.run(s.add_account("quinn", quota_bytes=1024 * 1024, quota_messages=100))
    yield s
    s.stop()


@contextlib.contextmanager
def login(srv, user: str):
    c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
    c.login(f"{user}@city.test", PASSWORD)
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.logout()


def unique_message() -> tuple[str, bytes]:
    token = f"zq{uuid.uuid4().hex[:12]}"
    return token, message(f"secret {token}", f"confidential {token} " + "x" * 4000, msgid=token)


def stored(srv, token: str) -> tuple[int, int]:
    """(blob rows holding `token`'s message, search-index rows containing `token`), read from the database."""
    async def go():
        db = srv.mb.router.central
        await srv.mb.store.catch_up_index("main")  # what waits for the indexes goes in first (indexer.py)
        async with db.read() as conn:
            rows = (await conn.execute(select(t.blobs.c.parsed, t.blobs.c.data))).all()
            blobs = sum(token in r.parsed or token.encode() in bytes(r.data or b"") for r in rows)
            if db.dialect == "sqlite":
                idx = (await conn.execute(text("SELECT count(*) FROM blob_fts WHERE subject LIKE :p OR body LIKE :p"),
                                          {"p": f"%{token}%"})).scalar()
            else:
                idx = (await conn.execute(text(
                    "SELECT count(*) FROM blob_search WHERE subject @@ to_tsquery('simple', :q)"
                    " OR body @@ to_tsquery('simple', :q)"), {"q": token})).scalar()
            return blobs, idx
    return srv.run(go())


def all_blobs(srv) -> int:
    """Stored bodies."""
    async def go():
        async with srv.mb.router.central.read() as conn:
            return (await conn.execute(select(func.count()).select_from(t.blobs))).scalar()
    return srv.run(go())


def quota(c: imaplib.IMAP4) -> tuple[int, int]:
    """(STORAGE used in KiB, MESSAGE used) from GETQUOTAROOT INBOX (RFC 9208 §4.3)."""
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK"
    m = re.search(rb"STORAGE (\d+) \d+ MESSAGE (\d+) \d+", data[1][0])
    assert m, data
    return int(m.group(1)), int(m.group(2))


def test_expunge_removes_body_search_rows_and_quota(srv):
    token, raw = unique_message()
    with login(srv, "quinn") as c:
        before = quota(c)
        assert c.append("INBOX", None, None, raw)[0] == "OK"
        assert stored(srv, token) == (1, 1)
        assert quota(c) == (before[0] + 5, before[1] + 1)
        c.select("INBOX")
        typ, data = c.search(None, "BODY", token)
        assert data[0] == b"1"
        c.store("1", "+FLAGS", r"(\Deleted)")
        typ, data = c.expunge()
        assert typ == "OK" and data == [b"1"]
        assert stored(srv, token) == (0, 0)
        assert quota(c) == before
        assert c.search(None, "BODY", token)[1][0] == b""


def test_delete_folder_removes_bodies_search_rows_and_quota(srv):
    tokens = []
    with login(srv, "quinn") as c:
        before = quota(c)
        assert c.create("Projects/2026")[0] == "OK"
        for _ in range(3):
            token, raw = unique_message()
            tokens.append(token)
            assert c.append("Projects/2026", None, None, raw)[0] == "OK"
        assert quota(c)[1] == before[1] + 3
        assert [stored(srv, tok) for tok in tokens] == [(1, 1)] * 3
        assert c.delete("Projects/2026")[0] == "OK"
        assert [stored(srv, tok) for tok in tokens] == [(0, 0)] * 3
        assert quota(c) == before


def test_shared_body_is_kept_for_the_other_recipient(srv):
    """One blob, two recipients: expunged by one, the other still reads it; gone after both."""
    token, raw = unique_message()
    srv.run(srv.add_account("rita", quota_bytes=1024 * 1024, quota_messages=100))
    srv.deliver("quinn", raw)
    srv.deliver("rita", raw)
    assert stored(srv, token) == (1, 1)  # content-addressed: one copy
    with login(srv, "quinn") as q, login(srv, "rita") as r:
        q.select("INBOX")
        q.store("1", "+FLAGS", r"(\Deleted)")
        assert q.expunge()[1] == [b"1"]
        assert quota(q) == (0, 0)
        assert stored(srv, token) == (1, 1)
        r.select("INBOX")
        typ, data = r.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == raw
        assert r.search(None, "BODY", token)[1][0] == b"1"
        r.store("1", "+FLAGS", r"(\Deleted)")
        assert r.expunge()[1] == [b"1"]
        assert stored(srv, token) == (0, 0)
        assert quota(r) == (0, 0)


def test_copy_and_move_keep_quota_equal_to_what_is_stored(srv):
    with login(srv, "quinn") as c:
        c.create("Keep")
        tokens = []
        for _ in range(2):
            token, raw = unique_message()
            tokens.append(token)
            c.append("INBOX", None, None, raw)
        c.select("INBOX")
        assert c.copy("1:2", "Keep")[0] == "OK"  # shares both bodies
        assert c._simple_command("MOVE", "1", "Keep")[0] == "OK"  # RFC 6851
        used = quota(c)
        recount = srv.run(srv.mb.store.recount_usage(srv.accounts["quinn"]))
        assert used[1] == recount.used_messages == 4  # INBOX 1, Keep 3
        c.select("Keep")
        c.store("1:*", "+FLAGS", r"(\Deleted)")
        c.expunge()
        assert stored(srv, tokens[0]) == (0, 0)  # its INBOX copy was moved away and then expunged
        assert stored(srv, tokens[1]) == (1, 1)  # still in INBOX
        assert quota(c)[1] == srv.run(srv.mb.store.recount_usage(srv.accounts["quinn"])).used_messages == 1
        c.select("INBOX")
        c.store("1:*", "+FLAGS", r"(\Deleted)")
        c.expunge()
        assert all_blobs(srv) == 0
        assert quota(c) == (0, 0)


def test_session_still_showing_an_expunged_message_gets_an_answer(srv):
    """Another session expunged the message and its body is gone; this one cannot be told before its
    FETCH ends (RFC 3501 §7.4.1), so it gets an empty message (RFC 2180 §4.1.3), then the EXPUNGE."""
    token, raw = unique_message()
    srv.deliver("quinn", raw)
    with login(srv, "quinn") as stale, login(srv, "quinn") as other:
        stale.select("INBOX")
        other.select("INBOX")
        other.store("1", "+FLAGS", r"(\Deleted)")
        assert other.expunge()[1] == [b"1"]
        assert stored(srv, token) == (0, 0)
        typ, data = stale.fetch("1", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER] BODY.PEEK[1] RFC822.SIZE)")
        assert typ == "OK", data
        assert token.encode() not in b"".join(p if isinstance(p, bytes) else b"".join(p) for p in data)
        typ, data = stale.search(None, "SUBJECT", token)
        assert typ == "OK" and data == [b""]  # its search text went with it
        typ, data = stale.noop()
        assert typ == "OK" and stale.untagged_responses.get("EXPUNGE") == [b"1"]


def test_new_mail_after_an_expunge_never_shows_the_removed_message(srv):
    """Rendered ENVELOPEs are cached by blob id; a removed body's id must not come back for new mail."""
    secret_token, secret = unique_message()
    srv.run(srv.add_account("rita", quota_bytes=1024 * 1024, quota_messages=100))
    with login(srv, "quinn") as q:
        q.append("INBOX", r"(\Deleted)", None, secret)
        q.select("INBOX")
        assert secret_token.encode() in q.fetch("1", "(ENVELOPE)")[1][0]  # now in the render cache
        q.expunge()
    token, raw = unique_message()
    srv.deliver("rita", raw)
    with login(srv, "rita") as r:
        r.select("INBOX")
        envelope = r.fetch("1", "(ENVELOPE)")[1][0]
        assert token.encode() in envelope and secret_token.encode() not in envelope
