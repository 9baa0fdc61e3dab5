"""Latency figures that tests used to assert as wall-clock limits: IDLE wake-up, parse and render speed, hostile-input costs.

Usage: .venv/bin/python benchmarks/latency_bench.py [--runs 20] [--only idle,parse,render,hostile,login]

Tests check behaviour and leave time to this script (on a machine shared with other work a
timed assertion fails for reasons of its own). The targets the tests held, printed beside
each figure, are what to compare against:

- idle: IDLE wake-up, from a delivery through the store (the path SMTP and submit() take) to
  the client reading ``* n EXISTS``, and from the 250 to an SMTP DATA to the same line
  (target: under 1 s; both on in-process servers on loopback, SQLite in a temporary folder);
- parse: one 4 KiB message (target under 5 ms), a 20 MB one with a big attachment (under 1 s:
  attachments are scanned, never decoded), 3,000 nested multiparts (under 2 s);
- render: 10,000 FETCH responses serialised (under 1 s), a 4 MiB literal fed to the command
  parser in 4 KiB chunks (under 3 s);
- hostile: LIST patterns ``*a*a…*b`` against a 200-character name (under 0.5 s), base subjects of
  hostile subjects (under 0.5 s), a 10,000-deep REFERENCES chain (under 5 s), the From of
  15,000 encoded words (under 0.5 s; was 13 s);
- login: a failed LOGIN for a real account, an unknown one, a disabled one and a non-address
  take the same time (each within a factor 3 of the real account's; one Argon2 check each).
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imapclient import IMAPClient  # noqa: E402

from tests.protocol.imap.harness import PASSWORD, ImapServer, message  # noqa: E402


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def _report(name: str, times: list[float], target: float) -> None:
    print(f"  {name:<48} median {_ms(statistics.median(times))}  max {_ms(max(times))}"
          f"  (target {target * 1000:.0f} ms)")


def _wait_exists(c: IMAPClient, n: int) -> None:
    seen: list = []
    while (n, b"EXISTS") not in seen:
        seen += c.idle_check(timeout=30) or [None]
        if seen[-1] is None:
            raise TimeoutError("no EXISTS in 30 s")


def bench_idle(runs: int) -> None:
    print("IDLE wake-up")
    with tempfile.TemporaryDirectory() as tmp:
        srv = ImapServer(Path(tmp), whole_server=True).start()
        try:
            c = IMAPClient("127.0.0.1", port=srv.port, ssl=False)
            c.login("alice@city.test", PASSWORD)
            c.select_folder("INBOX")
            store, smtp = [], []
            host, port = srv.smtp.addresses["smtp"]
            with ThreadPoolExecutor(1) as pool:
                for i in range(runs):
                    c.idle()
                    t0 = time.perf_counter()
                    done = pool.submit(srv.deliver, "alice", message(f"store {i}"))
                    _wait_exists(c, 2 * i + 1)
                    store.append(time.perf_counter() - t0)
                    done.result()
                    c.idle_done()
                    c.idle()
                    with smtplib.SMTP(host, port, timeout=30) as s:
                        s.sendmail("sender@example.org", ["alice@city.test"],
                                   message(f"smtp {i}", sender="sender@example.org"))
                        t0 = time.perf_counter()  # the 250 to DATA: committed
                    _wait_exists(c, 2 * i + 2)
                    smtp.append(time.perf_counter() - t0)
                    c.idle_done()
            c.logout()
        finally:
            srv.stop()
    _report("store delivery -> * EXISTS", store, 1.0)
    _report("SMTP 250 to DATA -> * EXISTS", smtp, 1.0)


def _timed(fn, runs: int = 1) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_parse(runs: int) -> None:
    from mailboxes import mime
    from mailboxes.mime import parse_message
    from tests.unit.mime import samples
    from tests.unit.mime.test_parse import _four_kib_message

    print("MIME parse")
    small = _four_kib_message()
    parse_message(small)
    per = [t / 50 for t in _timed(lambda: [parse_message(small) for _ in range(50)], runs)]
    _report(f"4 KiB message ({len(small)} octets)", per, 0.005)
    big = samples.gbk_message().replace(samples.b64(b"\xd0\xcf\x11\xe0" + bytes(300)),
                                        samples.b64(bytes(range(256)) * 80000))
    _report(f"{len(big) / 1e6:.0f} MB message, one attachment", _timed(lambda: parse_message(big), 3), 1.0)
    depth = 3000
    deep = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                    for i in range(depth)) + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    _report("3,000 nested multiparts", _timed(lambda: mime._parse(deep), 3), 2.0)


def bench_render(runs: int) -> None:
    from mailserver.imap import responses as r
    from mailserver.imap.grammar import CommandParser

    print("IMAP responses and parser")
    flags = r.flag_list(["\\Seen", "\\Answered", "$Label1"])
    envelope = r.Raw(b'("Mon, 7 Feb 1994 21:52:25 -0800" "Hello" (("A" NIL "a" "x.org")) NIL NIL NIL NIL NIL NIL "<i>")')
    date = r.date_time(datetime(2024, 1, 1, tzinfo=timezone.utc))

    def render() -> None:
        b"".join(bytes(r.FetchData(n, [(b"UID", b"%d" % (n + 1000)), (b"FLAGS", flags), (b"INTERNALDATE", date),
                                       (b"RFC822.SIZE", b"%d" % (n * 7)), (b"ENVELOPE", envelope)]))
                 for n in range(1, 10_001))
        r.fetch_lines((n, [(b"UID", b"%d" % n), (b"FLAGS", flags)]) for n in range(1, 10_001))

    _report("10,000 FETCH responses (two forms)", _timed(render, max(3, runs // 4)), 1.0)
    body = b"x" * (4 * 1024 * 1024)

    def literal() -> None:
        p = CommandParser()
        p.receive_data(b"a APPEND INBOX {%d+}\r\n" % len(body))
        for i in range(0, len(body), 4096):
            p.receive_data(body[i:i + 4096])
            p.next_event()
        p.receive_data(b"\r\n")
        p.next_event()

    _report("4 MiB literal in 4 KiB chunks", _timed(literal, 3), 3.0)


def bench_hostile(runs: int) -> None:
    from mailboxes.headers import originator
    from mailserver.imap.sorting import base_subject
    from mailserver.imap.threads import references
    from mailserver.imap.wildcard import compile_pattern
    from tests.unit.imap.test_imap_sorting import day, lists, rec

    print("Hostile input (linear work)")
    name = "a" * 200
    for groups in (6, 2000):
        pat, pct = compile_pattern("*a" * groups + "*b"), compile_pattern("%a" * groups + "%b")
        _report(f"LIST *a x{groups} *b on a 200-char name", _timed(lambda: (pat.fullmatch(name),
                                                                         pct.fullmatch(name)), 3), 0.5)
    subjects = ("[a]" * 20000, "[" * 20000, "re " * 20000, "[fwd:" * 5000 + "x" + "]" * 5000,
                "(fwd)" * 20000, "[x] " * 10000 + "re")
    _report("base subject of 6 hostile 60 KB subjects (each)",
            [t / len(subjects) for t in _timed(lambda: [base_subject(s) for s in subjects], 3)], 0.5)
    n = 10_000
    rs = [rec(i, subject="Re: chain", sent=day(0) + timedelta(seconds=i), msgid=f"<{i}@x>",
              refs=f"<{i - 1}@x>" if i > 1 else "") for i in range(1, n + 1)]
    _report("THREAD REFERENCES, a 10,000-deep chain", _timed(lambda: lists(references(rs)), 3), 5.0)
    words = b" ".join([b"=?utf-8?B?5L2g5aW9?="] * 15000)
    raw = b"From: " + words + b" <me@city.test>\r\n\r\nx"
    _report("From of 15,000 encoded words", _timed(lambda: originator(raw), 3), 0.5)


def bench_login(runs: int) -> None:
    import logging

    from tests.protocol.imap.test_imap_logins import FAILED_LOGINS, _login, with_a_disabled_carol
    from tests.support.hashers import counting

    logging.getLogger("postroom.auth").setLevel(logging.ERROR)  # an "auth failed" warning per attempt otherwise
    print("Failed LOGIN: the same time whoever is named (Argon2 2 passes, 16 MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        srv = with_a_disabled_carol(ImapServer(Path(tmp), hasher=counting(time_cost=2, memory_cost=16384)).start())
        try:
            times: dict[str, list[float]] = {k: [] for k in FAILED_LOGINS}
            for _ in range(runs):
                for name, (user, pw) in FAILED_LOGINS.items():
                    times[name] += _timed(lambda: _login(srv.port, user, pw))
        finally:
            srv.stop()
    real = statistics.median(times["real account, wrong password"])
    for name, ts in times.items():
        print(f"  {name:<48} median {_ms(statistics.median(ts))}  ratio {statistics.median(ts) / real:.2f}"
              "  (target over 0.33)")


BENCHES = {"idle": bench_idle, "parse": bench_parse, "render": bench_render, "hostile": bench_hostile,
           "login": bench_login}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", default=",".join(BENCHES))
    args = ap.parse_args()
    for name in args.only.split(","):
        BENCHES[name](args.runs)


if __name__ == "__main__":
    main()
