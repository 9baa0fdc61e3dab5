"""SELECT reads no internal dates, sizes or blobs; FETCH, SEARCH and SORT read them on demand, in batches, and answer as a full read would."""

from __future__ import annotations

import uuid

import pytest

from mailserver.imap import cache, fetch

from .harness import ImapServer, Raw, message


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def server(request, tmp_path):
    """A server per test on each back-end (the facts read is plain SQL per dialect, mailboxes/listing.py)."""
    url = None
    if request.param == "pg":
        from tests.conftest import _create_pg_database

        pg = request.getfixturevalue("pg")
        name = "lazy_" + uuid.uuid4().hex[:12]
        _create_pg_database(pg, name)
        url = pg.url(name)
    s = ImapServer(tmp_path, storage_url=url).start()
    yield s
    s.stop()


@pytest.fixture
def tiny_batches(monkeypatch):
    """Facts read two UIDs at a time, so every command below crosses batch boundaries."""
    monkeypatch.setattr(cache, "FACTS_BATCH", 2)
    monkeypatch.setattr(fetch, "FACTS_BATCH", 2)


def _cold(server, c: Raw, tag: bytes) -> list[bytes]:
    server.run(_forget(server))
    untagged, done = c.cmd(tag + b" SELECT INBOX")
    assert done.startswith(tag + b" OK")
    return untagged


async def _forget(server) -> None:
    server.service.services.snapshots._entries.clear()


def test_fetch_search_sort_after_a_cold_select_match_a_fresh_session(server, tiny_batches):
    for i in range(7):
        server.deliver("alice", message(f"m{i}", body="x" * (100 * (7 - i))))
    a = Raw(server.port, login="alice@city.test")
    b = Raw(server.port, login="alice@city.test")
    assert b"* 7 EXISTS\r\n" in _cold(server, a, b"s")
    assert a.cmd(b"f0 FETCH 2 (UID RFC822.SIZE)")[0][0].startswith(b"* 2 FETCH (UID 2 RFC822.SIZE ")
    # Elsewhere: UID 4 is expunged before a read its facts, new mail arrives.
    b.cmd(b"s SELECT INBOX")
    b.cmd(b"d STORE 4 +FLAGS.SILENT (\\Deleted)")
    b.cmd(b"e EXPUNGE")
    server.deliver("alice", message("new", body="y" * 50))
    got, done = a.cmd(b"f FETCH 1:* (UID RFC822.SIZE INTERNALDATE ENVELOPE)")  # no EXPUNGE yet (RFC 3501 §7.4.1)
    assert done.startswith(b"f OK")
    fetched = [u for u in got if b" FETCH (" in u]
    assert [u.split(b" ")[4] for u in fetched] == [b"1", b"2", b"3", b"4", b"5", b"6", b"7"]
    assert b"* 8 EXISTS\r\n" in got
    # The expunged message is still number 4 here (RFC 2180 §4.1.3): its facts came with b's STORE into
    # the folder's shared facts, its body is gone (an empty envelope).
    assert fetched[3].startswith(b"* 4 FETCH (UID 4 RFC822.SIZE ") and b"ENVELOPE (NIL NIL" in fetched[3]
    assert a.cmd(b"n NOOP")[0][0] == b"* 4 EXPUNGE\r\n"
    c = Raw(server.port, login="alice@city.test")
    _cold(server, c, b"s")
    items = b" (UID RFC822.SIZE INTERNALDATE ENVELOPE)"
    fresh, _ = c.cmd(b"f FETCH 1:*" + items)
    assert len(fresh) == 7 and a.cmd(b"g FETCH 1:*" + items)[0] == fresh
    for command in (b"UID SEARCH LARGER 400", b"UID SEARCH SMALLER 400 SINCE 1-Jan-2000",
                    b"UID SORT (SIZE) UTF-8 ALL", b"UID SORT (REVERSE ARRIVAL SUBJECT) UTF-8 ALL"):
        mine, fresh_answer = a.cmd(b"q " + command)[0], c.cmd(b"q " + command)[0]
        assert mine == fresh_answer and mine[0].split()[2:], command
    for x in (a, b, c):
        x.close()


def test_a_message_expunged_before_anyone_read_its_facts_is_an_empty_message(server):
    """No view read UID 2's facts before another process's expunge: FETCH answers it empty (RFC 2180 §4.1.3)."""
    for i in range(3):
        server.deliver("alice", message(f"m{i}"))
    a = Raw(server.port, login="alice@city.test")
    _cold(server, a, b"s")
    ref = server.run(server.mb.store.folder(server.accounts["alice"], "INBOX")).ref
    server.run(server.mb.store.store_flags(ref, [2], "add", 8))
    server.run(_forget(server))  # as if the expunge came from another node: no facts shared in this process
    server.run(server.mb.store.expunge(ref))
    got, done = a.cmd(b"f FETCH 1:3 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert done.startswith(b"f OK")
    lines = [u for u in got if b" FETCH (" in u]
    assert lines[1].startswith(b"* 2 FETCH (UID 2 RFC822.SIZE 0 ")
    assert b"m0" in lines[0] and b"m2" in b"".join(got[got.index(lines[2]):])
    assert a.cmd(b"n NOOP")[0][0] == b"* 2 EXPUNGE\r\n"
    a.close()
