"""Per-command bounds as real clients see them (imapclient, imaplib): LIST wildcards, SEARCH key limits, FETCH items."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

from .harness import PASSWORD, message


@pytest.fixture
def client(server):
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
    c.login("alice@city.test", PASSWORD)
    yield c
    c.logout()


@pytest.mark.timeout(60)  # liveness only: milliseconds when linear (benchmarks/latency_bench.py)
def test_list_with_a_backtracking_pattern_is_answered(server, client):
    """``*a*a*a*a*a*a*b`` against a 200-character name never ended with the old regex matcher."""
    client.create_folder("a" * 200)
    assert client.list_folders("", "*a*a*a*a*a*a*b") == []
    assert client.list_sub_folders("", "%a%a%a%a%a%a%b") == []
    assert [name for _f, _d, name in client.list_folders("", "*a*a*a*a*a*a*a")] == ["a" * 200]


def test_extended_list_patterns_are_bounded(server):
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("alice@city.test", PASSWORD)
    many = " ".join(f'"x{i}*"' for i in range(65))
    with pytest.raises(imaplib.IMAP4.error, match="Too many LIST patterns"):
        c._simple_command("LIST", '""', f"({many})")  # RFC 5258 §3: a list of patterns
    typ, data = c._simple_command("LIST", '""', "(" + " ".join(['"*"'] * 500) + ")")  # the same one 500 times
    typ, lines = c._untagged_response(typ, data, "LIST")
    assert typ == "OK" and [x.rsplit(b" ", 1)[1] for x in lines] == [  # each mailbox once (RFC 5258 §3)
        b"INBOX", b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"]
    c.logout()


def test_search_past_exists_gives_the_numbers_that_exist(server, client):
    for i in range(5):
        server.deliver("alice", message(f"m{i}"))
    client.select_folder("INBOX")
    assert client.search("1:3000") == [1, 2, 3, 4, 5]
    assert client.search(",".join(str(n) for n in range(2, 4000, 2))) == [2, 4]


def test_too_many_search_keys_is_bad_and_the_session_goes_on(server, client):
    server.deliver("alice", message("hello", sender="user7@city.test"))
    client.select_folder("INBOX")
    with pytest.raises(IMAPClient.Error, match="too many search keys"):
        client.search(["FROM", "x"] * 600)
    assert client.search(["FROM", "user7"] * 100) == [1]  # within the limit, repeated keys are fine
    with pytest.raises(IMAPClient.Error):
        client.search(["NOT"] * 100 + ["ALL"])  # nesting deeper than 32
    assert client.noop()[0] is not None


def test_repeated_fetch_items_are_answered_once(server):
    server.deliver("alice", message("one"))
    server.deliver("alice", message("two"))
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX", readonly=True)
    typ, data = c.fetch("1:*", "(" + " ".join(["BODY.PEEK[]"] * 200) + ")")
    assert typ == "OK"
    bodies = [part for part in data if isinstance(part, tuple)]
    assert len(bodies) == 2 and all(b"BODY[]" in head and b"Subject:" in body for head, body in bodies)
    with pytest.raises(imaplib.IMAP4.error, match="Too many FETCH items"):
        c.fetch("1:*", "(" + " ".join(f"BODY.PEEK[]<{k}.10>" for k in range(101)) + ")")
    assert c.noop()[0] == "OK"
    c.logout()


def test_a_cold_render_cache_is_filled_a_chunk_at_a_time(server, monkeypatch):
    """Stored parses are read and decoded LOAD_CHUNK at a time, so a cold 10,000-message FETCH does not hold the loop."""
    from mailserver.imap import cache as cache_mod

    for i in range(5):
        server.deliver("alice", message(f"subject {i}"))
    store = server.mb.store
    real, sizes = store.parsed, []

    async def spy(partition, blob_ids):
        sizes.append(len(blob_ids))
        return await real(partition, blob_ids)

    monkeypatch.setattr(cache_mod, "LOAD_CHUNK", 2)
    monkeypatch.setattr(store, "parsed", spy)
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("alice@city.test", PASSWORD)
    c.select("INBOX", readonly=True)
    typ, data = c.fetch("1:*", "(ENVELOPE)")
    assert typ == "OK" and [f"subject {i}".encode() in d for i, d in enumerate(data)] == [True] * 5
    assert sizes == [2, 2, 1]
    c.logout()


def test_keywords_per_message_are_bounded(server, client):
    """``STORE 1:* +FLAGS (k1 ... k5000)`` would hold a 5,000-name set per message: NO [LIMIT] beyond 64."""
    for i in range(3):
        server.deliver("alice", message(f"m{i}"))
    client.select_folder("INBOX")
    with pytest.raises(IMAPClient.Error, match="LIMIT"):
        client.add_flags([1, 2, 3], [f"k{i}" for i in range(65)])
    client.add_flags([1, 2, 3], [f"k{i}" for i in range(60)])
    with pytest.raises(IMAPClient.Error, match="LIMIT"):  # 60 there + 5 more
        client.add_flags([2], [f"x{i}" for i in range(5)])
    client.add_flags([2], ["k1", "k2", "x0", "x1"])  # two already there: 62
    assert len([f for f in client.get_flags([2])[2] if not f.startswith(b"\\")]) == 62
    client.set_flags([2], ["only"])  # replacing is measured alone
    assert [f for f in client.get_flags([2])[2] if not f.startswith(b"\\")] == [b"only"]
    with pytest.raises(IMAPClient.Error, match="LIMIT"):
        client.append("INBOX", message("big flags"), flags=[f"k{i}" for i in range(65)])
