"""Several IMAP sessions at once: concurrent APPEND gives unique, increasing UIDs; IDLE wakes for another session's APPEND and MOVE.

Clients are raw-bytes sockets in threads; they synchronise by reading the
responses they expect (a blocking read with the socket's timeout as the
deadline), never by sleeping.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .harness import ImapServer, Raw, message

SESSIONS = 8
APPENDS = 25
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


def ok(c: Raw, command: bytes) -> list[bytes]:
    untagged, tagged = c.cmd(command)
    assert tagged.startswith(command.split(b" ", 1)[0] + b" OK"), (command, tagged)
    return untagged


def append(c: Raw, tag: bytes, folder: bytes, raw: bytes) -> tuple[int, int]:
    """APPEND with a non-synchronising literal (RFC 7888); (UIDVALIDITY, UID) from APPENDUID (RFC 4315 §3)."""
    _, tagged = c.cmd(tag + b" APPEND " + folder + b" {%d+}\r\n" % len(raw) + raw)
    m = _APPENDUID.search(tagged)
    assert tagged.startswith(tag + b" OK") and m, tagged
    return int(m.group(1)), int(m.group(2))


@pytest.fixture
def any_store_server(tmp_path, storage_url):
    """The IMAP server on SQLite and on PostgreSQL (where the appends really run in parallel)."""
    srv = ImapServer(tmp_path, storage_url=storage_url).start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_concurrent_appends_get_unique_increasing_uids_and_all_arrive(any_store_server):
    server = any_store_server
    setup = Raw(server.port, login="alice@city.test")
    ok(setup, b"a CREATE Shared-drop")
    start = threading.Barrier(SESSIONS)

    def one_session(n: int) -> list[tuple[int, int, str]]:
        c = Raw(server.port, login="alice@city.test")
        try:
            start.wait(timeout=30)  # every session logged in, then all append at once
            out = []
            for i in range(APPENDS):
                subject = f"s{n}-m{i:02d}"
                validity, uid = append(c, b"A%d" % i, b"Shared-drop", message(subject, msgid=f"{subject}@t"))
                out.append((validity, uid, subject))
            return out
        finally:
            c.close()

    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(one_session, range(SESSIONS)))  # re-raises a session's failure here

    every = [r for per in results for r in per]
    assert len({v for v, _, _ in every}) == 1  # one UIDVALIDITY throughout
    for per in results:  # each session's commits are in order: its UIDs strictly increase
        uids = [u for _, u, _ in per]
        assert uids == sorted(uids) and len(set(uids)) == APPENDS
    uids = sorted(u for _, u, _ in every)
    assert uids == list(range(1, SESSIONS * APPENDS + 1))  # unique, none lost, no gap
    untagged = ok(setup, b"b STATUS Shared-drop (MESSAGES UIDNEXT)")
    assert untagged == [b"* STATUS Shared-drop (MESSAGES %d UIDNEXT %d)\r\n" % (len(uids), uids[-1] + 1)]
    ok(setup, b"c EXAMINE Shared-drop")
    fetched = ok(setup, b"d FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    seen = [(int(m.group(1)), int(m.group(2)), m.group(3).decode())
            for m in (re.match(rb"\* (\d+) FETCH \(UID (\d+) BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\n"
                               rb"Subject: (\S+)\r\n", f) for f in fetched)]
    assert [s for s, _, _ in seen] == list(range(1, len(uids) + 1))  # sequence numbers follow UID order
    assert sorted((u, s) for _, u, s in seen) == sorted((u, s) for _, u, s in every)  # each where APPENDUID said
    setup.close()


def idle(c: Raw, tag: bytes) -> None:
    c.send(tag + b" IDLE\r\n")
    line = c.line()
    assert line.startswith(b"+ "), line  # RFC 2177 §3: idling; updates may come from now on


def read_until(c: Raw, wanted: set[bytes]) -> list[bytes]:
    """Untagged lines until every wanted one has come (the socket timeout is the deadline)."""
    got: list[bytes] = []
    while not wanted <= set(got):
        line = c.line()
        assert line, f"connection closed; had {got!r}"
        got.append(line)
    return got


def done(c: Raw, tag: bytes) -> list[bytes]:
    c.send(b"DONE\r\n")
    untagged, tagged = c.until(tag)
    assert tagged.startswith(tag + b" OK"), tagged
    return untagged


def test_idle_wakes_for_another_sessions_append_and_move_and_the_source_sees_the_expunge(server):
    watcher, source_watcher, actor = (Raw(server.port, login="alice@city.test") for _ in range(3))
    try:
        ok(actor, b"a CREATE Watched")
        ok(actor, b"b CREATE Source")
        append(actor, b"c", b"Source", message("to be moved", msgid="moved@t"))
        assert b"* 0 EXISTS\r\n" in ok(watcher, b"w1 SELECT Watched")
        assert b"* 1 EXISTS\r\n" in ok(source_watcher, b"s1 SELECT Source")
        idle(watcher, b"w2")
        idle(source_watcher, b"s2")

        append(actor, b"d", b"Watched", message("appended", msgid="appended@t"))
        # RFC 2177: the new message is announced while idling; RECENT with it (an IMAP4rev1 session).
        assert read_until(watcher, {b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"}) == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]

        ok(actor, b"e SELECT Source")
        moved = ok(actor, b"f MOVE 1 Watched")  # RFC 6851 §3.3
        assert b"* 1 EXPUNGE\r\n" in moved
        # The moved message is new here, \\Recent for the one session that sees it first (RFC 3501 §6.4.7).
        assert read_until(watcher, {b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"}) == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
        assert read_until(source_watcher, {b"* 1 EXPUNGE\r\n"}) == [b"* 1 EXPUNGE\r\n"]

        assert done(watcher, b"w2") == []  # everything was told while idling
        assert done(source_watcher, b"s2") == []
        fetched = ok(watcher, b"w3 FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert [re.search(rb"Subject: ([^\r]+)", f).group(1) for f in fetched] == [b"appended", b"to be moved"]
        assert ok(source_watcher, b"s3 NOOP") == []  # the expunge was told once, while idling
    finally:
        for c in (watcher, source_watcher, actor):
            c.close()
