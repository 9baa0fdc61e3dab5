"""A 10,000-message folder driven by imaplib, imapclient and aioimaplib (slow: the folder is built through the store).

One module, so the folder is built once (--dist loadfile keeps a module on one worker); its tests run in file
order, the EXPUNGE last but one."""

from __future__ import annotations

import imaplib
import random
import time
from concurrent.futures import ThreadPoolExecutor

import aioimaplib
import pytest
from imapclient import IMAPClient

from benchmarks.imap_bench import make_message

from .harness import PASSWORD, ImapServer

N = 10_000
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    srv = ImapServer(tmp_path_factory.mktemp("big")).start()
    rng = random.Random(1)
    raws = [make_message(i, rng) for i in range(N)]
    srv.run(srv.deliver_many("alice", raws), timeout=600)
    yield srv
    srv.stop()


def test_imapclient_on_10000_messages(big):
    c = IMAPClient("127.0.0.1", port=big.port, ssl=False, timeout=120)
    c.login("alice@city.test", PASSWORD)
    info = c.select_folder("INBOX")  # how long it takes: benchmarks/imap_bench.py
    assert info[b"EXISTS"] == N
    flags = c.get_flags(range(1, N + 1))
    assert len(flags) == N
    envs = c.fetch(range(N - 99, N + 1), ["ENVELOPE", "RFC822.SIZE"])
    assert len(envs) == 100 and all(v[b"RFC822.SIZE"] == 5300 for v in envs.values())
    assert envs[N][b"ENVELOPE"].subject.startswith(b"message 9999 ")
    assert c.search(["BODY", "reconciliation"]) == [i + 1 for i in range(N) if i % 100 == 7]
    assert c.search(["BODY", "稽查"], charset="UTF-8") == [i + 1 for i in range(N) if i % 100 == 13]
    assert c.search(["SUBJECT", "overdue"]) == [i + 1 for i in range(N) if i % 100 == 21]
    assert c.search(["SUBJECT", "message 4242 "]) == [4243]
    c.add_flags(range(1, N + 1), [b"\\Seen"], silent=True)
    assert len(c.search("SEEN")) == N
    c.remove_flags(range(1, N + 1), [b"\\Seen"], silent=True)
    assert c.search("SEEN") == []
    body = c.fetch([N], ["BODY.PEEK[]"])[N][b"BODY[]"]
    assert len(body) == 5300 and body.startswith(b"From: user49@city.test")
    c.logout()


# Before the EXPUNGE below: the whole folder, as built.
def test_sort_and_thread_10000_messages(big):
    """SORT and THREAD through imapclient, another session served meanwhile (how long: benchmarks/imap_bench.py)."""
    c = IMAPClient("127.0.0.1", port=big.port, ssl=False, timeout=120)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX")
    other = imaplib.IMAP4("127.0.0.1", big.port, timeout=60)
    other.login("alice@city.test", PASSWORD)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(c.thread, "REFERENCES", "ALL", "UTF-8")  # cold: every stored parse is loaded
        slowest = 0.0
        while not job.done():  # another session is served meanwhile: the event loop is not held for long
            t1 = time.monotonic()
            assert other.noop()[0] == "OK"
            slowest = max(slowest, time.monotonic() - t1)
        threads = job.result()
    assert slowest < 2  # a stall bound, generous: about 0.06 s here, against 0.003 s for a NOOP on an idle server
    other.logout()
    # threads of five: the first message and its four replies (References: <first>), siblings by date
    assert len(threads) == N // 5
    for root, *replies in threads:  # (1 (2)(3)(4)(5)): UID = i + 1
        assert sorted(r for (r,) in replies) == [root + 1, root + 2, root + 3, root + 4]
    by_date = c.sort(["DATE"])
    by_subject = c.sort(["REVERSE", "SUBJECT"])
    assert sorted(by_date) == list(range(1, N + 1)) and by_date != sorted(by_date)
    assert by_subject[0] == 10000 and by_subject[-1] == 1  # "message 9999 ..." down to "message 0 ..."
    assert len(c.thread("ORDEREDSUBJECT", "ALL", "UTF-8")) == N  # every base subject differs
    c.logout()


def test_imaplib_sequence_numbers_and_expunge_seen_by_another_session(big):
    a = imaplib.IMAP4("127.0.0.1", big.port)
    a.login("alice@city.test", PASSWORD)
    _typ, data = a.select("INBOX")
    start = int(data[0])
    assert start >= N - 100
    _typ, data = a.fetch("1:*", "(UID)")
    assert len(data) == start
    b = imaplib.IMAP4("127.0.0.1", big.port)
    b.login("alice@city.test", PASSWORD)
    b.select("INBOX")
    b.store("1:100", "+FLAGS.SILENT", "(\\Deleted)")
    b.expunge()
    a.noop()
    assert a.untagged_responses.pop("EXPUNGE") == [b"1"] * 100  # each renumbers the rest: always message 1
    _typ, data = a.search(None, "ALL")
    assert len(data[0].split()) == start - 100
    for c in (a, b):
        c.logout()


async def test_aioimaplib_lists_10000_flags(big):
    c = aioimaplib.IMAP4(host="127.0.0.1", port=big.port, timeout=120)
    await c.wait_hello_from_server()
    await c.login("alice@city.test", PASSWORD)
    resp = await c.select("INBOX")
    exists = int(next(x for x in resp.lines if x.endswith(b"EXISTS")).split()[0])
    # aioimaplib handles the lines of one read recursively, so it reads a large folder in slices
    seen = 0
    for lo in range(1, exists + 1, 250):
        resp = await c.fetch(f"{lo}:{min(exists, lo + 249)}", "(FLAGS RFC822.SIZE)")
        assert resp.result == "OK"
        seen += sum(1 for x in resp.lines if b" FETCH " in x)
    assert seen == exists
    resp = await c.search("ALL")
    assert len(resp.lines[0].split()) == exists
    await c.logout()


def test_a_20_mb_append(tmp_path):
    srv = ImapServer(tmp_path).start()
    try:
        c = IMAPClient("127.0.0.1", port=srv.port, ssl=False)
        c.login("alice@city.test", PASSWORD)
        big_msg = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 20_000  # 20 MB, parsed off the loop
        resp = c.append("INBOX", big_msg)
        assert b"APPENDUID" in resp
        c.select_folder("INBOX")
        assert c.fetch([1], ["RFC822.SIZE"])[1][b"RFC822.SIZE"] == len(big_msg)
        c.logout()
    finally:
        srv.stop()
