#!/usr/bin/env python3
"""FETCH of parts of a large message: read by ranges (mailserver/imap/fetch.py) against read whole.

Usage: .venv/bin/python benchmarks/fetch_ranges_bench.py [--mb 20] [--runs 20] [--pg]

One message of --mb MB (a short text part, then one large base64 attachment) is delivered to
a server (the tests' in-process harness: the real store and IMAP server on loopback; SQLite, or
with --pg a PostgreSQL started as the tests start it, with production settings);
an imaplib client then times, per command, the mean time from sending it to its tagged reply:
the text part (BODY.PEEK[1], what a client shows), the first 64 KiB (BODY.PEEK[]<0.65536>,
Thunderbird's chunked download) and BINARY.SIZE[2] — once with the message read by ranges
(the default) and once read whole (RANGED_OCTETS set past its size), in the same run. The
server's peak RSS growth over each phase is printed as well (ru_maxrss of this process).
"""

from __future__ import annotations

import argparse
import base64
import imaplib
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailserver.imap import fetch  # noqa: E402
from tests.protocol.imap.harness import PASSWORD, ImapServer  # noqa: E402
from tests.support import pgserver, templates  # noqa: E402

COMMANDS = ["(BODY.PEEK[1])", "(BODY.PEEK[]<0.65536>)", "(BINARY.SIZE[2])"]


def big_message(megabytes: int) -> bytes:
    data = base64.encodebytes(random.Random(1).randbytes(megabytes * 750_000))
    return (b"From: carol@city.test\r\nTo: alice@city.test\r\nSubject: annual report\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n"
            b'--b\r\nContent-Type: application/pdf; name="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + data + b"--b--\r\n")


def timed(c: imaplib.IMAP4, command: str, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        typ, _data = c.fetch("1", command)
        assert typ == "OK"
    return (time.perf_counter() - start) / runs * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pg", action="store_true", help="the store on PostgreSQL")
    args = ap.parse_args()
    pg = pgserver.start(durable=True) if args.pg else None
    if args.pg and pg is None:
        sys.exit("PostgreSQL is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        srv = ImapServer(Path(tmp), storage_url=templates.pg_url(pg) if pg else None).start()
        try:
            raw = big_message(args.mb)
            srv.deliver("alice", raw)
            c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=120)
            c.login("alice@city.test", PASSWORD)
            c.select("INBOX", readonly=True)
            print(f"one message of {len(raw) / 1e6:.1f} MB; mean ms per command over {args.runs} runs")
            print(f"{'command':28} {'by ranges':>10} {'whole':>10} {'ratio':>7}")
            default = fetch.RANGED_OCTETS
            rows = []
            for command in COMMANDS:
                fetch.RANGED_OCTETS = default
                ranged = timed(c, command, args.runs)
                fetch.RANGED_OCTETS = 1 << 40
                whole = timed(c, command, args.runs)
                rows.append((command, ranged, whole))
                print(f"{command:28} {ranged:10.2f} {whole:10.2f} {whole / ranged:6.1f}x", flush=True)
            fetch.RANGED_OCTETS = default
            print(f"peak RSS of this process (server and client): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
            c.logout()
        finally:
            srv.stop()
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    main()
