"""SELECT of a folder the server read before (FolderSnapshots: the cached list brought up to date) answers as a first read does (RFC 3501 §6.3.1, RFC 7162 §3.1.2.1)."""

from __future__ import annotations

from sqlalchemy import delete

from mailboxes import folderstate
from mailboxes import schema as t
from mailboxes.model import Flag

from tests.support.folderstates import record_loads

from .harness import ImapServer, Raw, message


def _select(c: Raw, tag: bytes, verb: bytes = b"SELECT") -> list[bytes]:
    untagged, done = c.cmd(tag + b" " + verb + b" INBOX")
    assert done.startswith(tag + b" OK")
    return untagged


def _cold_select(server, c: Raw, tag: bytes) -> list[bytes]:
    """The same SELECT with the cache emptied first: every message read afresh."""
    server.run(_forget(server))
    return _select(c, tag, b"EXAMINE")  # takes no \Recent, so the answer can be compared


async def _forget(server) -> None:
    server.service.services.snapshots._entries.clear()


def test_reselect_after_changes_elsewhere_matches_a_fresh_read(server):
    for i in range(6):
        server.deliver("alice", message(f"m{i}"), flags=int(Flag.SEEN) if i < 2 else 0)
    a = Raw(server.port, login="alice@city.test")
    b = Raw(server.port, login="alice@city.test")
    first = _select(a, b"s1")
    assert b"* 6 EXISTS\r\n" in first and b"* 6 RECENT\r\n" in first
    assert any(b"[UNSEEN 3]" in u for u in first)
    a.cmd(b"c CLOSE")
    # Another session changes flags (a new keyword), expunges one and new mail arrives.
    _select(b, b"s")
    b.cmd(b"x STORE 3 +FLAGS.SILENT (\\Seen $Urgent)")
    b.cmd(b"y STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd(b"z EXPUNGE")
    b.cmd(b"u UNSELECT")
    server.deliver("alice", message("m6"))
    server.deliver("alice", message("m7"), flags=int(Flag.SEEN))
    again = _select(a, b"s2")  # the cached list, patched
    assert b"* 7 EXISTS\r\n" in again
    assert b"* 2 RECENT\r\n" in again  # UIDs 7 and 8: 1..6 went to a's first SELECT
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Urgent)\r\n" in again
    assert any(b"[UNSEEN 3]" in u for u in again)  # seqs 1, 2 (UIDs 2, 3) are seen, seq 3 (UID 4) is not
    fetched, _ = a.cmd(b"f FETCH 1:* (UID FLAGS)")
    a.cmd(b"c2 CLOSE")
    fresh = _cold_select(server, a, b"s3")
    def same(lines: list[bytes]) -> list[bytes]:  # EXAMINE has no \Recent and no PERMANENTFLAGS
        return [u for u in lines if b"RECENT" not in u and b"PERMANENTFLAGS" not in u]
    assert same(fresh) == same(again)
    fetched_fresh, _ = a.cmd(b"f2 FETCH 1:* (UID FLAGS)")
    assert [f.replace(b" \\Recent", b"").replace(b"\\Recent", b"") for f in fetched] == fetched_fresh
    assert [f.split(b" FLAGS")[0] for f in fetched_fresh] == [
        b"* %d FETCH (UID %d" % (i + 1, u) for i, u in enumerate([2, 3, 4, 5, 6, 7, 8])]
    a.close()
    b.close()


def test_a_recreated_folder_is_not_served_from_the_old_list(server):
    for i in range(3):
        server.deliver("alice", message(f"w{i}"), folder="Archive")
    a = Raw(server.port, login="alice@city.test")
    untagged, _ = a.cmd(b"s SELECT Archive")
    assert b"* 3 EXISTS\r\n" in untagged
    old = next(u for u in untagged if b"UIDVALIDITY" in u)
    a.cmd(b"c CLOSE")
    assert a.cmd(b"d DELETE Archive")[1].startswith(b"d OK")
    assert a.cmd(b"n CREATE Archive")[1].startswith(b"n OK")
    server.deliver("alice", message("new"), folder="Archive")
    untagged, done = a.cmd(b"t SELECT Archive")
    assert done.startswith(b"t OK")
    assert b"* 1 EXISTS\r\n" in untagged
    assert next(u for u in untagged if b"UIDVALIDITY" in u) != old
    fetched, _ = a.cmd(b"f FETCH 1:* (UID)")
    assert fetched == [b"* 1 FETCH (UID 1)\r\n"]
    a.close()


def test_a_restarted_server_selects_from_the_saved_state_as_from_a_whole_read(tmp_path, monkeypatch):
    """The first SELECT after a start reads the folder's saved state and what changed since (mailboxes.folderstate)."""
    monkeypatch.setattr(folderstate, "SAVE_MIN", 4)  # 1,000 in service
    loads = record_loads(monkeypatch)
    first = ImapServer(tmp_path).start()
    try:
        for i in range(12):
            first.deliver("alice", message(f"m{i}"), flags=int(Flag.SEEN) if i < 3 else 0)
        a = Raw(first.port, login="alice@city.test")
        _select(a, b"s1")  # read whole, then saved in the background
        first.run(first.service.services.store.states.idle())
        a.cmd(b"x STORE 1:* +FLAGS.SILENT (\\Flagged)")  # every message changed: the next SELECT saves again
        a.cmd(b"c CLOSE")
        _select(a, b"s2")
        first.run(first.service.services.store.states.idle())
        a.cmd(b"y STORE 4 +FLAGS.SILENT (\\Deleted)")
        a.cmd(b"k STORE 6 +FLAGS.SILENT ($Urgent)")
        a.cmd(b"z STORE 5 -FLAGS.SILENT (\\Flagged)")
        a.cmd(b"e EXPUNGE")
        a.close()
        first.deliver("alice", message("late"), flags=int(Flag.SEEN))
    finally:
        first.stop()
    assert loads == [None]
    second = ImapServer(tmp_path).start()  # nothing in memory: the state saved by the first server
    try:
        b = Raw(second.port, login="alice@city.test")
        saved = _select(b, b"s3", b"EXAMINE")
        saved_fetch, _ = b.cmd(b"f FETCH 1:* (UID FLAGS)")
        assert loads == [None, 4]  # the saved state (after the STORE of all) and 4 rows since: UIDs 4, 5, 6, 13
        second.run(_forget_saved(second))
        b.cmd(b"u UNSELECT")
        whole = _select(b, b"s4", b"EXAMINE")
        whole_fetch, _ = b.cmd(b"f FETCH 1:* (UID FLAGS)")
        assert loads == [None, 4, None]
        assert saved == whole and saved_fetch == whole_fetch
        assert b"* 12 EXISTS\r\n" in saved
        assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Urgent)\r\n" in saved
        assert whole_fetch[3] == b"* 4 FETCH (UID 5 FLAGS ())\r\n"
        assert whole_fetch[4] == b"* 5 FETCH (UID 6 FLAGS (\\Flagged $Urgent))\r\n"
        assert whole_fetch[-1] == b"* 12 FETCH (UID 13 FLAGS (\\Seen \\Recent))\r\n"  # new since a left
        b.close()
    finally:
        second.stop()


async def _forget_saved(server) -> None:
    """Empty the in-memory snapshots and the saved states: the next SELECT reads every message."""
    server.service.services.snapshots._entries.clear()
    store = server.service.services.store
    db = await store._db(store.home(server.accounts["alice"]))
    async with db.write() as conn:
        assert (await conn.execute(delete(t.folder_states))).rowcount == 1
