"""Crash safety of workflow events: `postroom serve` killed with SIGKILL while sources post, every event it answered 202 arrives exactly once.

The server runs as a subprocess (as tests/protocol/smtp/test_crash.py). Ten clients post events
over HTTP without pause, singly and in batches of 20; the server is killed (SIGKILL) under them,
some events acknowledged but not yet turned into mail, some being delivered at that moment. After a
restart: every event that got a 202 is in its recipient's INBOX exactly once, read over IMAP with
imaplib, and nothing is delivered twice (the events table has nothing left to do when checked).
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import signal
from collections import Counter
from email import policy
from pathlib import Path

import aiohttp
import pytest

from mailboxes.events import SENT, EventStore, Sources
from mailboxes.service import open_mailboxes
from mailserver import config as config_mod
from tests.conftest import FAST_HASHER

from .smtp.support import PASSWORD, wait_for
from .smtp.test_crash import free_port, port_open, postroom, serve_on_fresh_ports

pytestmark = [pytest.mark.slow, pytest.mark.interop]

CLIENTS = 10
PEOPLE = 10
ACKED_BEFORE_KILL = 300
LEASE_S = 2  # [queue] lease: claims of the killed process lapse this soon


def write_config(tmp_path: Path, storage_url: str) -> tuple[Path, dict[str, int]]:
    ports = {"http": free_port(), "imap": free_port()}
    cfg = tmp_path / "postroom.toml"
    cfg.write_text(
        f'[server]\nhostname = "mail.city.test"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[listen]\nsmtp = ""\nsubmission = ""\nsubmissions = ""\nimap = "127.0.0.1:{ports["imap"]}"\nimaps = ""\n'
        f'http = "127.0.0.1:{ports["http"]}"\n'
        f'[storage]\nurl = "{storage_url}"\n'
        '[tls]\nallow_plaintext_auth_on_loopback = true\n'
        f'[queue]\nlease = {LEASE_S}\nmx_lookup = false\n[dkim]\ndns_lookup = false\n', encoding="utf-8")
    return cfg, ports


async def keep_posting(url: str, secret: str, client: int, stop: asyncio.Event, acked: dict[str, str]) -> None:
    """Post until `stop` (every third request a batch of 20); each event answered 202 goes into `acked`."""
    k = 0
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            while not stop.is_set():
                n = 20 if k % 3 == 2 else 1
                evs = [{"id": f"c{client}-{k}-{j}", "type": "reminder", "title": f"c{client}-{k}-{j}", "body": "b",
                        "recipients": [f"u{(client + k + j) % PEOPLE}@city.test"], "locale": "en"} for j in range(n)]
                path, body = ("/api/v1/events/batch", {"events": evs}) if n > 1 else ("/api/v1/events", evs[0])
                async with s.post(url + path, json=body, headers=headers) as r:
                    assert r.status == 202, await r.text()
                    await r.read()
                for ev in evs:
                    acked[ev["title"]] = ev["recipients"][0]
                k += 1
    except (aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError):
        pass  # the server died under the client: what was not answered is the client's to post again


def inbox_subjects(port: int, address: str) -> Counter:
    with imaplib.IMAP4("127.0.0.1", port) as c:
        c.login(address, PASSWORD)
        c.select("INBOX", readonly=True)
        _, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return Counter(str(email.message_from_bytes(item[1], policy=policy.default)["Subject"])
                       for item in data if isinstance(item, tuple))


async def test_sigkill_between_202_and_delivery_delivers_each_event_once(tmp_path, storage_url):
    cfg, ports = write_config(tmp_path, storage_url)
    assert await (await postroom(cfg, "init")).wait() == 0
    mb = await open_mailboxes(config_mod.load(cfg).storage(), hasher=FAST_HASHER)
    await mb.directory.add_domain("city.test")
    for i in range(PEOPLE):
        await mb.add_account(f"u{i}@city.test", password=PASSWORD)
    _, secret, _ = await Sources(mb.router.central).add("oa")

    log = tmp_path / "serve.log"
    server, ports = await serve_on_fresh_ports(lambda: write_config(tmp_path, storage_url), log, "--workers", "1")
    url = f"http://127.0.0.1:{ports['http']}"
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    clients = [asyncio.create_task(keep_posting(url, secret, i, stop, acked)) for i in range(CLIENTS)]
    await wait_for(lambda: len(acked) >= ACKED_BEFORE_KILL, timeout=120, what="events before the kill")
    server.send_signal(signal.SIGKILL)
    assert await server.wait() == -signal.SIGKILL
    stop.set()
    await asyncio.gather(*clients)
    store = EventStore(mb.router.central)
    counts = await store.counts()
    print(f"acked before SIGKILL: {len(acked)}; events table at the kill: {counts}")
    assert set(counts) - {SENT}, "some acknowledged events were not delivered yet when killed"

    server = await postroom(cfg, "serve", "--workers", "1", log=log)
    try:
        await wait_for(lambda: port_open(ports["imap"]), timeout=30, what="the restarted server")

        async def all_sent() -> bool:
            return set(await store.counts()) == {SENT}
        await wait_for(all_sent, timeout=LEASE_S + 120, what="every event delivered after the restart")
        seen: Counter = Counter()
        for i in range(PEOPLE):
            got = await asyncio.to_thread(inbox_subjects, ports["imap"], f"u{i}@city.test")
            assert set(got.values()) <= {1}, f"u{i} has duplicates: {[s for s, n in got.items() if n > 1][:5]}"
            seen.update(got)
            for subject, to in acked.items():
                if to == f"u{i}@city.test":
                    assert got[subject] == 1, f"{subject} acknowledged with 202 but missing from {to}"
        assert len(seen) >= len(acked)  # anything more was stored but its 202 was cut by the kill
    finally:
        server.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.wait(), 30)
        await store.close()
        await mb.close()
    assert code == 0, log.read_text(errors="replace")[-3000:]
