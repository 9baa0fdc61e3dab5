"""COMPRESS=DEFLATE benchmark: octets on the wire for a 1,000-message header sync, with and without compression.

Usage: .venv/bin/python benchmarks/compress_bench.py [--messages 1000]

A server runs in-process on loopback (SQLite in a temporary folder). The sync is what
Thunderbird and phone clients send after SELECT: UID FETCH 1:* of UID, FLAGS, RFC822.SIZE,
INTERNALDATE and the usual header fields. The same responses (checked equal, octet for
octet) are read once plainly and once over COMPRESS DEFLATE; the figures are the octets the
client received for that one command, and the time it took.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.protocol.imap.harness import ImapServer, Raw, message  # noqa: E402
from tests.protocol.imap.test_imap_compress import Deflated  # noqa: E402

SYNC = (b"f UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE "
        b"BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID REFERENCES IN-REPLY-TO CONTENT-TYPE)])")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = ImapServer(Path(tmp)).start()
        try:
            msgs = [message(f"关于{i}号文件的审批意见 Re: quarterly tax report {i}", f"正文 {i}", msgid=f"bench{i}",
                            sender=f"科员{i % 40} <staff{i % 40}@city.test>") for i in range(args.messages)]
            srv.run(srv.deliver_many("alice", msgs))
            plain = Raw(srv.port, login="alice@city.test")
            plain.cmd(b"s EXAMINE INBOX")
            plain.cmd(SYNC)  # warm the server's caches, so both timed runs find them warm
            t0 = time.perf_counter()
            untagged, tagged = plain.cmd(SYNC)
            t_plain = time.perf_counter() - t0
            plain.close()
            raw = sum(map(len, untagged)) + len(tagged)
            z = Deflated(srv.port)
            z.cmd(b"s EXAMINE INBOX")
            before = z.wire_in
            t0 = time.perf_counter()
            zu, zt = z.cmd(SYNC)
            t_z = time.perf_counter() - t0
            z.close()
            assert (zu, zt) == (untagged, tagged), "compressed responses differ"
            wire = z.wire_in - before
        finally:
            srv.stop()
    print(f"header sync of {args.messages} messages")
    print(f"  plain:      {raw:>10,} octets  {t_plain * 1000:7.1f} ms")
    print(f"  compressed: {wire:>10,} octets  {t_z * 1000:7.1f} ms")
    print(f"  ratio:      {raw / wire:.1f}x fewer octets with COMPRESS=DEFLATE")


if __name__ == "__main__":
    main()
