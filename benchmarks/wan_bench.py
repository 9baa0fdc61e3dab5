"""WAN drain: messages per second a city's queue delivers to a district through a 150 ms one-way link, after an outage.

Usage: .venv/bin/python benchmarks/wan_bench.py [--routine 200] [--urgent 10] [--size 8192] [--delay 0.150]
                                                [--scenario outage|steady]

Two Postrooms in one process (city and district, each its own SQLite database in a temporary
folder), joined by tests/faultproxy.FaultProxy delaying each direction by --delay seconds. The
city routes district.test through the proxy (opportunistic STARTTLS, as between sites).

- outage (default): the link is offline; --routine routine messages of --size bytes are queued,
  then --urgent 特急 document-sized messages (priority FLASH); once the city has found the link
  down, it comes back. Printed: seconds from the link's return until the probe answered, then
  messages per second drained from there, for the urgent ones (until the last urgent one arrived)
  and for everything; whether every urgent message arrived before the first routine one; and the
  connections the district saw.
- steady: the link is up; the same messages are queued at once and the drain rate is printed.
  This one also runs on code before issue 12 point 4 (no link states, no priorities), which is
  how the "before" figure was taken.

Arrival is the district's commit (its INBOX), polled every 20 ms. Runs take 15-40 s: keep them
short on a shared machine.

Measured 2026-12-04 on the shared 2-core machine (load ~1), 8 KB messages, 150 ms each way, STARTTLS:
- before (main at a08c67f, steady, 40 messages): 1.3 msg/s, 40 connections (one per message).
- steady, 200 messages: 15.1 msg/s (13.2 s), 8 connections.
- outage, 200 routine + 10 特急: 2 connection attempts while down (the first delivery, one probe);
  the probe answered 2.4 s after the link returned (probe back-off 1, 2 s); then 16.8 msg/s for all
  210 (12.5 s); the 10 urgent ones in 1.87 s, every one before the first routine one; 10 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delivery.submit import Submission  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.protocol.smtp.support import make_config, start_instance  # noqa: E402

SENDER, RECIPIENT = "office@city.test", "wang@district.test"
POLL = 0.02


def body(subject: str, size: int) -> bytes:
    head = (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}.{time.monotonic_ns()}@bench>\r\n\r\n").encode()
    line = b"The quick report of the district bureau, line after line.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=getattr(logging, args.log))
    tmp = Path(tempfile.mkdtemp(prefix="wan-bench-"))
    district = await start_instance(make_config(tmp / "d", f"sqlite:///{tmp}/d.db", hostname="mail.district.test"),
                                    domains=("district.test",))
    proxy = FaultProxy("127.0.0.1", district.port("smtp"), delay=args.delay)
    await proxy.start()
    queue_cfg = {"retry_delays": [60, 300]}
    if args.scenario == "outage":
        queue_cfg["probe_delays"] = [1, 2]
    city = await start_instance(make_config(tmp / "c", f"sqlite:///{tmp}/c.db", hostname="mail.city.test",
                                            queue=queue_cfg), domains=("city.test",))
    try:
        await city.add_user(SENDER)
        await district.add_user(RECIPIENT)
        await city.parts.routes.add("district.test", f"127.0.0.1:{proxy.port}", tls="opportunistic")
        acct = await district.mb.directory.account(RECIPIENT)
        inbox = await district.mb.store.folder(acct, "INBOX")
        if args.scenario == "outage":
            proxy.set_offline(True)

        async def submit(subject: str, urgent: bool) -> None:
            kw = {"priority": 0} if urgent else {}
            out = await city.parts.submitter.submit(Submission(SENDER, (RECIPIENT,), body(subject, args.size),
                                                               origin="bridge", **kw))
            assert out.accepted

        for i in range(args.routine):
            await submit(f"routine-{i:04d}", False)
        for i in range(args.urgent if args.scenario == "outage" else 0):
            await submit(f"urgent-{i:03d}", True)
        total = args.routine + (args.urgent if args.scenario == "outage" else 0)

        if args.scenario == "outage":
            links = city.parts.worker.links
            while not await links.down():
                await asyncio.sleep(POLL)
            while sum(1 for e in await city.parts.queue.entries() for r in e.recipients if r.attempts) < total:
                await asyncio.sleep(POLL)  # every message has found the link down once
            attempts_in_outage = proxy.counters.attempts
            back = time.monotonic()
            proxy.set_offline(False)
            while await links.down():
                await asyncio.sleep(POLL)
            up = time.monotonic()
            print(f"link back -> probe answered: {up - back:.2f} s (probe back-off 1, 2 s); "
                  f"connection attempts while down: {attempts_in_outage} for {total} messages")
            start = up
        else:
            start = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < total:
            metas = await district.mb.store.messages(inbox.ref)
            if len(metas) > len(seen):
                new = metas[len(seen):]
                raws = await district.mb.store.raw_many(inbox.ref.partition, [m.blob_id for m in new])
                now = time.monotonic()
                for m in new:
                    seen[email.message_from_bytes(raws[m.blob_id])["Subject"]] = now
            await asyncio.sleep(POLL)
        end = max(seen.values())
        print(f"{args.scenario}: {total} messages of {args.size} B over a {args.delay * 1000:.0f} ms one-way link: "
              f"{total / (end - start):.1f} msg/s drained ({end - start:.1f} s); "
              f"district connections: {proxy.counters.attempts}")
        if args.scenario == "outage" and args.urgent:
            urgent = [t for s, t in seen.items() if s.startswith("urgent")]
            routine = [t for s, t in seen.items() if s.startswith("routine")]
            last_urgent = max(urgent)
            print(f"urgent: {len(urgent)} in {last_urgent - start:.2f} s after the probe "
                  f"({len(urgent) / max(last_urgent - start, 1e-3):.1f} msg/s); "
                  f"all before the first routine one: {last_urgent <= min(routine)}")
    finally:
        await city.stop()
        await proxy.close()
        await district.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--routine", type=int, default=200)
    p.add_argument("--urgent", type=int, default=10)
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--delay", type=float, default=0.150)
    p.add_argument("--scenario", choices=("outage", "steady"), default="outage")
    p.add_argument("--log", default="WARNING", help="log level (INFO shows every delivery)")
    asyncio.run(main(p.parse_args()))
