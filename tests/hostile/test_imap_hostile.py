"""IMAP hostile input against a 10,000-message folder: answered, server up, no loop stall over 200 ms, RSS growth under 64 MiB.

The server runs in this process (tests/protocol/imap/harness.py), so the resident set read
from /proc/self/statm is the server's plus a client that reads and discards as it goes. A probe
task on the server's loop records, between its ~10 ms ticks, the largest CPU time the loop's thread
spent (work that holds the loop: at most MAX_STALL) and the largest wall-clock lag (at most MAX_LAG,
generous: on a shared machine, or under the coverage tracer, the thread also waits for a core and the GIL).
The folder is filled through the store API (not over IMAP) once per module; the slowest
cases are marked ``slow`` (left out of ``make test-quick``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailboxes.model import Flag
from mailserver.app import GC_THRESHOLDS
from tests.protocol.imap.harness import PASSWORD, ImapServer

pytestmark = pytest.mark.slow  # a 10,000-message folder; `make test` runs it, `make test-quick` leaves it out

N = 10_000
UNIQUE = 1_000  # distinct messages; the folder holds N (copies share their stored bodies)
MAX_STALL = 0.2  # seconds of CPU on the loop's thread between two probe ticks
MAX_LAG = 1.0  # seconds of wall-clock delay of a tick (as tests/hostile/test_smtp_hostile.py)
MAX_GROWTH = 64 << 20  # octets of resident memory
TICK = 0.01
PAGE = os.sysconf("SC_PAGE_SIZE")
BIG = 2_000_000  # octets of the large messages (FETCH amplification)
FIELDS = 500  # header field names in one FETCH (each response echoes the list: RFC 3501 §7.4.2)


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Probe:
    """A task on the server's loop: the largest CPU time and wall-clock lag between ticks since ``reset``."""

    def __init__(self, srv: ImapServer) -> None:
        self.max_lag = self.max_busy = 0.0
        self._task = srv.run(self._start())

    async def _start(self) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(TICK)
            self.max_lag = max(self.max_lag, loop.time() - t - TICK)
            self.max_busy = max(self.max_busy, time.thread_time() - cpu)

    def reset(self) -> None:
        self.max_lag = self.max_busy = 0.0


def _message(i: int) -> bytes:
    return (f"From: user{i % 50}@city.test\r\nTo: staff@city.test\r\nSubject: note {i}\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0800\r\nMessage-ID: <{i}.hostile@city.test>\r\n\r\n"
            f"Body of note {i}: the quarterly figures.\r\n").encode()


def _big(i: int) -> bytes:
    head = f"From: big@city.test\r\nSubject: big {i}\r\nMessage-ID: <big{i}@city.test>\r\n\r\n".encode()
    return head + (b"%069d\r\n" % i) * ((BIG - len(head)) // 71)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    srv = ImapServer(tmp_path_factory.mktemp("hostile")).start()
    store = srv.mb.store
    alice = srv.accounts["alice"]

    async def fill() -> None:
        # UNIQUE distinct messages, then copied within the folder (one INSERT each) up to N
        await srv.deliver_many("alice", [_message(i) for i in range(UNIQUE)])
        inbox = await store.folder(alice, "INBOX")
        for _ in range(N // UNIQUE - 1):
            await store.copy(alice, inbox.ref, range(1, UNIQUE + 1), inbox.ref)
        for name in ("Copies", "Moved", "Gone", "Big", "a" * 200):
            await store.create_folder(alice, name)
        await srv.deliver_many("alice", [_big(1), _big(2)], "Big")
        # "Gone": 10,000 messages of which every other one is expunged, so QRESYNC has VANISHED to report
        gone = await store.folder(alice, "Gone")
        await store.copy(alice, inbox.ref, range(1, N + 1), gone.ref)
        odd = list(range(1, N + 1, 2))
        await store.store_flags(gone.ref, odd, "add", int(Flag.DELETED))
        await store.expunge(gone.ref, odd)

    srv.run(fill(), timeout=600)
    probe = Probe(srv)
    bystander = Client(srv.port, login="bob@city.test")  # "another session still gets served"
    warm = Client(srv.port, login="alice@city.test")  # caches a real server would have warm
    warm.cmd(b"w1 SELECT INBOX")
    warm.cmd(b"w2 FETCH 1:* (FLAGS ENVELOPE)")
    warm.cmd(b"w3 SEARCH FROM user7")
    warm.close()
    srv.probe = probe  # type: ignore[attr-defined]
    srv.bystander = bystander  # type: ignore[attr-defined]
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # as `postroom serve` runs: collections do not rescan the folder
    gc.freeze()
    yield srv
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    bystander.close()
    srv.stop()


@pytest.fixture
def bounded(hostile, request):
    """Around one case: the bystander is served, no stall over MAX_STALL, RSS grows less than MAX_GROWTH."""
    before = rss()
    hostile.probe.reset()
    stalls_before = len(hostile.watchdog.stalls)
    yield hostile
    lag, busy = hostile.probe.max_lag, hostile.probe.max_busy
    grown = rss() - before
    _, tagged = hostile.bystander.cmd(b"b NOOP")
    assert tagged.startswith(b"b OK"), tagged
    stalls = list(hostile.watchdog.stalls)[stalls_before:]
    print(f"{request.node.name}: loop busy {busy * 1000:.0f} ms, lag {lag * 1000:.0f} ms, "
          f"RSS {grown / (1 << 20):+.1f} MiB; {stalls}")  # shown with -s
    assert busy < MAX_STALL, f"event loop busy {busy * 1000:.0f} ms at once; watchdog saw {stalls}"
    assert lag < MAX_LAG, f"event loop stalled {lag * 1000:.0f} ms; watchdog saw {stalls}"
    assert grown < MAX_GROWTH, f"resident memory grew {grown >> 20} MiB"


class Client:
    """A raw-bytes client that reads responses as they come and keeps only the first octets of each literal."""

    KEEP = 256

    def __init__(self, port: int, *, login: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = bytearray()
        self.greeting = self.line()
        if login:
            _, tagged = self.cmd(b"L LOGIN " + login.encode() + b" " + PASSWORD.encode())
            assert tagged.startswith(b"L OK"), tagged

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"closed; buffered {bytes(self.buf[:200])!r}")
        self.buf += data

    def line(self) -> bytes:
        while (i := self.buf.find(b"\n")) < 0:
            self._fill()
        out = bytes(self.buf[: i + 1])
        del self.buf[: i + 1]
        return out

    def skip(self, n: int) -> bytes:
        kept = b""
        while n:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            if len(kept) < self.KEEP:
                kept += bytes(self.buf[: min(take, self.KEEP - len(kept))])
            del self.buf[:take]
            n -= take
        return kept

    def responses(self, tag: bytes) -> Iterator[bytes]:
        """Each response (literals cut to KEEP octets), the tagged one last."""
        while True:
            line = self.line()
            while (m := re.search(rb"~?\{(\d+)\}\r\n$", line)) is not None:
                line = line[: m.start()] + b"<" + self.skip(int(m.group(1)))[:16] + b"...>" + self.line()
            yield line
            if line.startswith(tag + b" "):
                return

    def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        lines = list(self.responses(tag))
        return lines[:-1], lines[-1]

    def cmd(self, command: bytes) -> tuple[list[bytes], bytes]:
        self.sock.sendall(command + b"\r\n")
        return self.until(command.split(b" ", 1)[0])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def alice(bounded):
    c = Client(bounded.port, login="alice@city.test")
    yield c
    c.close()


# ------------------------------------------------------------------ the cases


def test_list_patterns_that_backtracked(alice):
    """``*a*a*a*a*a*a*b`` against a 200-character name: seconds to forever with a regex."""
    for pattern in (b"*a*a*a*a*a*a*b", b"%a%a%a%a%a%a%b", b"*a%a*a%a*a%a*a%a*b" * 20, b"*" * 10_000 + b"b"):
        untagged, tagged = alice.cmd(b'l1 LIST "" "' + pattern + b'"')
        assert tagged.startswith(b"l1 OK") and untagged == []
        _, tagged = alice.cmd(b'l2 LSUB "" "' + pattern + b'"')
        assert tagged.startswith(b"l2 OK")
    untagged, tagged = alice.cmd(b'l3 LIST "" "*a*a*a*a*a*a*a"')
    assert tagged.startswith(b"l3 OK") and len(untagged) == 1 and b"a" * 200 in untagged[0]


def test_search_with_sequence_numbers_past_exists(alice):
    alice.cmd(b"s0 SELECT INBOX")
    untagged, tagged = alice.cmd(b"s1 SEARCH 1:30000")
    assert tagged.startswith(b"s1 OK")
    assert untagged[-1].split()[2:] == [b"%d" % n for n in range(1, N + 1)]
    sparse = b",".join(b"%d" % n for n in range(1, 2 * N, 2))  # 10,000 ranges, half past EXISTS
    untagged, tagged = alice.cmd(b"s2 SEARCH " + sparse)
    assert tagged.startswith(b"s2 OK") and len(untagged[-1].split()) - 2 == N // 2


@pytest.mark.parametrize("key", [b"FROM %d", b"FROM x"])
def test_six_thousand_from_keys_are_refused(alice, key):
    alice.cmd(b"s0 SELECT INBOX")
    keys = b" ".join(key.replace(b"%d", b"%d" % i) for i in range(6000))
    _, tagged = alice.cmd(b"s1 SEARCH " + keys)
    assert tagged.startswith(b"s1 BAD") and b"too many search keys" in tagged


def test_many_from_keys_within_the_limit_do_not_stall(alice):
    alice.cmd(b"s0 SELECT INBOX")
    keys = b"OR " * 31 + b" ".join(b"FROM user%d@" % i for i in range(32))  # 32 keys, nested 31 deep
    untagged, tagged = alice.cmd(b"s1 SEARCH " + keys)
    assert tagged.startswith(b"s1 OK") and len(untagged[-1].split()) - 2 == 32 * N // 50
    keys = b" ".join(b"NOT FROM nobody%d" % i for i in range(240))  # 480 keys, each over every message
    untagged, tagged = alice.cmd(b"s2 SEARCH " + keys)
    assert tagged.startswith(b"s2 OK") and len(untagged[-1].split()) - 2 == N


@pytest.mark.parametrize("nest", [b"NOT " * 10_000 + b"ALL", b"OR ALL " * 10_000 + b"ALL",
                                  b"(" * 10_000 + b"ALL" + b")" * 10_000])
def test_deep_nesting_is_refused(alice, nest):
    alice.cmd(b"s0 SELECT INBOX")
    _, tagged = alice.cmd(b"s1 SEARCH " + nest)
    assert tagged.startswith(b"s1 BAD")


def test_copy_and_move_everything(alice):
    alice.cmd(b"c0 SELECT INBOX")
    _, tagged = alice.cmd(b"c1 COPY 1:* Copies")
    assert tagged.startswith(b"c1 OK [COPYUID ")
    alice.cmd(b"c2 SELECT Copies")
    untagged, tagged = alice.cmd(b"c3 MOVE 1:* Moved")
    assert tagged.startswith(b"c3 OK")
    assert sum(1 for u in untagged if u.endswith(b" EXPUNGE\r\n")) == N
    _, tagged = alice.cmd(b"c4 UID MOVE 1:* Copies")  # nothing left: still answered
    assert tagged.startswith(b"c4 OK")


def test_qresync_with_a_huge_known_uids_set(alice):
    alice.cmd(b"q0 ENABLE QRESYNC")
    _, tagged = alice.cmd(b"q1 EXAMINE Gone")
    uidvalidity = re.search(rb"UIDVALIDITY (\d+)", b"".join(_)).group(1)  # type: ignore[union-attr]
    known = b",".join(b"%d" % u for u in range(1, N + 1))  # 10,000 single UIDs
    untagged, tagged = alice.cmd(b"q2 EXAMINE Gone (QRESYNC (" + uidvalidity + b" 1 " + known + b"))")
    assert tagged.startswith(b"q2 OK")
    [vanished] = [u for u in untagged if u.startswith(b"* VANISHED (EARLIER)")]
    assert vanished.split()[-1].startswith(b"1,3,5,")
    untagged, tagged = alice.cmd(b"q3 UID FETCH " + known + b" (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert tagged.startswith(b"q3 OK") and any(u.startswith(b"* VANISHED (EARLIER)") for u in untagged)


def test_fetch_amplification(alice):
    alice.cmd(b"f0 SELECT Big")
    many_partials = b" ".join(b"BODY.PEEK[]<%d.2002000>" % k for k in range(200))
    _, tagged = alice.cmd(b"f1 UID FETCH 1:* (" + many_partials + b")")
    assert tagged.startswith(b"f1 BAD")  # more than 100 items
    for item, name in ((b"BODY.PEEK[]", b"BODY[]"), (b"BODY.PEEK[]<0.2002000>", b"BODY[]<0>")):
        lines, tagged = alice.cmd(b"f2 UID FETCH 1:* (" + b" ".join([item] * 200) + b")")
        assert tagged.startswith(b"f2 OK") and len(lines) == 2
        assert all(line.count(name) == 1 for line in lines)  # asked 200 times, sent once
    some_partials = b" ".join(b"BODY.PEEK[]<%d.2002000>" % k for k in range(50))
    lines, tagged = alice.cmd(b"f3 UID FETCH 1:* (" + some_partials + b")")  # 200 MB, streamed
    assert tagged.startswith(b"f3 OK") and all(line.count(b"BODY[]<") == 50 for line in lines)


def test_thousands_of_keywords_on_every_message(alice):
    alice.cmd(b"k0 SELECT INBOX")
    _, tagged = alice.cmd(b"k1 STORE 1:* +FLAGS.SILENT (" + b" ".join(b"k%d" % i for i in range(5000)) + b")")
    assert tagged.startswith(b"k1 NO [LIMIT]")


def test_fetch_of_hundreds_of_header_fields_on_every_message(alice):
    alice.cmd(b"h0 EXAMINE INBOX")
    fields = b" ".join(b"X-F%d" % i for i in range(FIELDS)) + b" Subject"
    lines, tagged = alice.cmd(b"h1 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (" + fields + b")])")
    assert tagged.startswith(b"h1 OK") and len(lines) == N


def test_a_one_gigabyte_literal_announced(bounded):
    c = Client(bounded.port)
    _, tagged = c.cmd(b"a1 LOGIN {1073741824}")  # before login: 64 KiB at most
    assert tagged.startswith(b"a1 BAD [TOOBIG]")
    _, tagged = c.cmd(b"a2 LOGIN alice@city.test " + PASSWORD.encode())
    assert tagged.startswith(b"a2 OK")
    _, tagged = c.cmd(b"a3 APPEND INBOX {1073741824}")
    assert tagged.startswith(b"a3 NO [TOOBIG]")  # RFC 7889: an APPEND too large is NO, not BAD
    c.sock.sendall(b"a4 APPEND INBOX {1073741824+}\r\n")  # non-synchronising: sent anyway, dropped as it comes
    chunk = b"x" * (1 << 20)
    for _ in range(32):
        c.sock.sendall(chunk)
    c.close()


def test_a_hundred_thousand_pipelined_noops(alice):
    count = 100_000
    pool = ThreadPoolExecutor(1)
    sender = pool.submit(alice.sock.sendall, b"n NOOP\r\n" * count + b"e NOOP\r\n")
    seen, rest = 0, b""
    while True:  # counted in whole chunks: a light client, so the server's thread is not starved of the GIL
        chunk = rest + alice.sock.recv(1 << 20)
        assert chunk != rest, "connection closed"
        cut = chunk.rfind(b"\n") + 1
        done, rest = chunk[:cut], chunk[cut:]
        seen += done.count(b"\nn OK ") + done.startswith(b"n OK ")
        if b"\ne OK " in done or done.startswith(b"e OK "):
            break
    sender.result(120)  # re-raises what the sending thread met
    pool.shutdown()
    assert seen == count


def test_a_ten_megabyte_command_line(alice):
    alice.sock.sendall(b"t1 NOOP " + b"x" * (10 << 20) + b"\r\n")
    _, tagged = alice.until(b"t1")
    assert tagged.startswith(b"t1 BAD") and b"TOOBIG" in tagged
    _, tagged = alice.cmd(b"t2 NOOP")
    assert tagged.startswith(b"t2 OK")


def test_starttls_injection(bounded):
    sock = socket.create_connection(("127.0.0.1", bounded.port), timeout=30)
    f = sock.makefile("rb", buffering=0)
    assert f.readline().startswith(b"* OK")
    padding = b"\r\n" * ((65536 - 12) // 2)
    sock.sendall(padding + b"x STARTTLS\r\ny LOGIN alice@city.test " + PASSWORD.encode() + b"\r\n")
    assert f.readline().startswith(b"x OK")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(b"z SELECT INBOX\r\n")
        got = tls.recv(1000)
        assert got.startswith(b"z BAD"), got  # the injected LOGIN never ran
