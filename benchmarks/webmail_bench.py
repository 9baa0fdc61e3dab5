"""Webmail response times on a 10,000-message folder: the inbox page, a deep page, opening a message, search (p50/p99).

Usage: .venv/bin/python benchmarks/webmail_bench.py [--messages 10000] [--requests 200]

The store is SQLite in a temporary folder; the webmail app (make_app, as `postroom serve`
builds it) is served on loopback and driven by one signed-in aiohttp client over a kept-alive
connection, one request at a time. "server" times are measured by an outermost middleware
(request in to response body written out, what the issue's target is about); "round trip" at
the client, an upper bound that adds the client's own work; "cpu" is this process's CPU time
per request (server, its SQLite threads and the client), which the load of a shared machine
does not inflate. Target: under 50 ms p99 (server).
The machine's load average is printed beside the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from mailboxes.ingest import prepare  # noqa: E402
from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailboxes.store import Delivery  # noqa: E402
from webmail.app import make_app  # noqa: E402
from webmail.context import SignInRefused  # noqa: E402

WORDS_ZH = ["季度", "报告", "会议", "通知", "预算", "审批", "人事", "档案", "安全", "培训", "采购", "合同"]
WORDS_EN = ["budget", "meeting", "report", "contract", "training", "review", "schedule", "minutes"]


def message(i: int) -> bytes:
    zh = "".join(WORDS_ZH[(i * k) % len(WORDS_ZH)] for k in range(1, 6))
    en = " ".join(WORDS_EN[(i * k) % len(WORDS_EN)] for k in range(1, 5))
    body = (f"各位同事：关于{zh}的安排如下。\r\nPlease see the {en} attached.\r\n" * 20)
    return (f"From: Sender {i % 97} <sender{i % 97}@city.test>\r\nTo: alice@city.test\r\n"
            f"Subject: {zh} {en} #{i}\r\nDate: Mon, 02 Nov 2026 10:00:00 +0800\r\n"
            f"Message-ID: <{i}@city.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body).encode()


def pct(times: list[float], p: float) -> float:
    s = sorted(times)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


async def main(n: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mb = await open_mailboxes(StorageConfig(url=f"sqlite:///{tmp}/bench.db"),
                                  hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("alice@city.test", password="pw")
        t0 = time.perf_counter()
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        for k in range(0, n, 500):
            batch = [Delivery(prepare(message(i)), ((acct, "INBOX"),), 0, (), start + timedelta(minutes=i))
                     for i in range(k, min(n, k + 500))]
            await asyncio.gather(*(mb.store.deliver(d) for d in batch))
        print(f"filled INBOX with {n} messages in {time.perf_counter() - t0:.1f} s")

        async def login(address: str, password: str, ip: str | None):
            a = await mb.directory.authenticate(address, password)
            if a is None:
                raise SignInRefused()
            return a
        served: list[float] = []

        @web.middleware
        async def timing(request, handler):
            t = time.perf_counter()
            try:
                return await handler(request)
            finally:
                served.append(time.perf_counter() - t)
        app = make_app(mb, login=login)
        app.middlewares.insert(0, timing)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(base + "/login") as r:
                token = re.search(r'name="csrf" value="([^"]*)"', await r.text()).group(1)
            async with s.post(base + "/login", data={"csrf": token, "address": "alice@city.test", "password": "pw"}) as r:
                assert r.status == 200, r.status
            cases = {
                "inbox page 1": lambda i: "/mail?folder=INBOX",
                "inbox page 100": lambda i: "/mail?folder=INBOX&page=100",
                "open a message": lambda i: f"/message?folder=INBOX&uid={1 + (i * 37) % n}",
                "search Chinese 季度": lambda i: "/mail?folder=INBOX&q=%E5%AD%A3%E5%BA%A6",
                "search English 'budget'": lambda i: "/mail?folder=INBOX&q=budget",
            }
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
            print(f"{'request':28} {'server p50':>10} {'p99':>7} {'round trip p50':>15} {'p99':>7} {'mean':>7} {'cpu':>6} (ms)")
            for name, path in cases.items():
                times = []
                served.clear()
                cpu = time.process_time()
                for i in range(requests):
                    t = time.perf_counter()
                    async with s.get(base + path(i)) as r:
                        await r.read()
                        assert r.status == 200, (name, r.status)
                    times.append(time.perf_counter() - t)
                print(f"{name:28} {pct(served, 0.5):10.1f} {pct(served, 0.99):7.1f} {pct(times, 0.5):15.1f} "
                      f"{pct(times, 0.99):7.1f} {statistics.mean(times) * 1000:7.1f} "
                      f"{(time.process_time() - cpu) / requests * 1000:6.1f}")
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        await runner.cleanup()
        await mb.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200)
    a = ap.parse_args()
    asyncio.run(main(a.messages, a.requests))
