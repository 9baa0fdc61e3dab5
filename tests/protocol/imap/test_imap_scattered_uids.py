"""UID sets of thousands of separate ranges (every other message, pairs with gaps) through imaplib, on each back-end."""

from __future__ import annotations

import imaplib
import re

import pytest

from .harness import PASSWORD, ImapServer, message

N = 4_200  # messages: 1,400 two-message spans, or 2,100 single UIDs; past SQLite's expression depth of 1,000


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def srv(request, tmp_path_factory):
    """One server per back-end for the module; each test works in folders of its own."""
    tmp = tmp_path_factory.mktemp("scattered")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/postroom.db"
    else:
        from tests.conftest import _create_pg_database

        pg = request.getfixturevalue("pg")
        _create_pg_database(pg, "scattered")
        url = pg.url("scattered")
    s = ImapServer(tmp, storage_url=url).start()
    s.run(s.mb.store.create_folder(s.accounts["alice"], "Source"))
    s.run(s.deliver_many("alice", [message(f"m{i}") for i in range(N)], "Source"))
    yield s
    s.stop()


@pytest.fixture
def imap(srv, request):
    """alice, with a fresh copy of the N messages selected in a folder named after the test."""
    c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=120)
    c.login("alice@city.test", PASSWORD)
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[-60:]
    assert c.create(name)[0] == "OK"
    assert c.select("Source")[0] == "OK"
    assert c.uid("COPY", "1:*", name)[0] == "OK"
    assert c.select(name)[0] == "OK"
    yield c
    c.logout()


def spans() -> tuple[str, list[int]]:
    """``1:2,4:5,7:8,...``: 1,400 ranges that are not single numbers."""
    uids = [u for u in range(1, N + 1) if u % 3 != 0]
    return ",".join(f"{u}:{u + 1}" for u in range(1, N + 1, 3)), uids


def every_other() -> tuple[str, list[int]]:
    uids = list(range(1, N + 1, 2))
    return ",".join(map(str, uids)), uids


def uid_search(c: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = c.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return sorted(int(x) for x in data[0].split())


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [spans, every_other])
def test_uid_store_fetch_and_search_on_a_scattered_set(imap, pattern):
    text, uids = pattern()
    typ, data = imap.uid("STORE", text, "+FLAGS.SILENT", r"(\Flagged)")  # one UPDATE path (system flags)
    assert typ == "OK", data
    assert uid_search(imap, "FLAGGED") == uids
    typ, data = imap.uid("STORE", text, "+FLAGS.SILENT", "(project-x)")  # the keyword path
    assert typ == "OK", data
    assert uid_search(imap, "KEYWORD", "project-x") == uids
    typ, data = imap.uid("STORE", text, "-FLAGS.SILENT", r"(\Flagged)")
    assert typ == "OK", data
    assert uid_search(imap, "FLAGGED") == []
    typ, data = imap.uid("FETCH", text, "(FLAGS)")
    assert typ == "OK"
    assert sorted(int(re.search(rb"UID (\d+)", d).group(1)) for d in data) == uids
    assert uid_search(imap, "UID", text) == uids
    typ, data = imap.search(None, "UID", text)  # SEARCH UID with sequence numbers back: here UID = number
    assert typ == "OK" and sorted(int(x) for x in data[0].split()) == uids


@pytest.mark.parametrize("pattern", [spans, every_other])
def test_conditional_store_on_a_scattered_set(imap, pattern):
    text, uids = pattern()
    typ, data = imap.uid("STORE", text, "(UNCHANGEDSINCE 1000000)", "+FLAGS.SILENT", r"(\Seen)")  # RFC 7162 §3.1.3
    assert typ == "OK", data
    assert uid_search(imap, "SEEN") == uids


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [spans, every_other])
def test_uid_copy_move_and_expunge_of_a_scattered_set(imap, request, pattern):
    text, uids = pattern()
    rest = sorted(set(range(1, N + 1)) - set(uids))
    dest = f"Dest-{pattern.__name__}"
    assert imap.create(dest)[0] == "OK"
    typ, data = imap.uid("COPY", text, dest)
    assert typ == "OK", data
    assert imap.status(dest, "(MESSAGES)")[1] == [f"{dest} (MESSAGES {len(uids)})".encode()]
    typ, data = imap.uid("MOVE", text, dest)  # RFC 6851: copy, then expunge the set
    assert typ == "OK", data
    assert uid_search(imap, "ALL") == rest
    assert imap.status(dest, "(MESSAGES)")[1] == [f"{dest} (MESSAGES {2 * len(uids)})".encode()]
    assert imap.select(dest)[0] == "OK"
    moved_text = ",".join(f"{u}" for u in range(len(uids) + 1, 2 * len(uids) + 1, 2))  # every other moved one
    typ, data = imap.uid("STORE", moved_text, "+FLAGS.SILENT", r"(\Deleted)")
    assert typ == "OK", data
    typ, data = imap.uid("EXPUNGE", "1:*")  # RFC 4315 §2.1: only those with \Deleted go
    assert typ == "OK", data
    left = uid_search(imap, "ALL")
    assert len(left) == len(uids) + len(uids) // 2 and not set(left) & set(range(len(uids) + 1, 2 * len(uids) + 1, 2))
    typ, data = imap.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
    assert typ == "OK"
    scattered = ",".join(map(str, left[::2]))
    typ, data = imap.uid("EXPUNGE", scattered)  # a scattered UID EXPUNGE
    assert typ == "OK", data
    assert uid_search(imap, "ALL") == left[1::2]


def test_a_pathological_set_is_bounded_by_the_command_line_and_the_session_goes_on(imap):
    # "1:*" then every odd UID again: as many parts as fit in the 64 KiB command line
    # (session.max_line) are merged into one range before the store sees them.
    parts = ["1:*"] + [str(u) for u in range(3, 2 * 9_000, 2)]
    typ, data = imap.uid("STORE", ",".join(parts), "+FLAGS.SILENT", r"(\Answered)")
    assert typ == "OK", data
    assert uid_search(imap, "ANSWERED") == list(range(1, N + 1))
    # 100,000 parts do not fit in a command line: BAD [TOOBIG], and
    # the session keeps serving.
    huge = ",".join(["1:*"] + [str(u) for u in range(3, 200_000, 2)])
    with pytest.raises(imaplib.IMAP4.error, match=r"TOOBIG"):
        imap.uid("STORE", huge, "-FLAGS.SILENT", r"(\Answered)")
    assert imap.noop()[0] == "OK"
    assert uid_search(imap, "ANSWERED") == list(range(1, N + 1))
