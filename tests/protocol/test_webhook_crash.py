"""Crash safety of the webhook outbox: `postroom serve` SIGKILLed mid-request still delivers the callback after a restart.

The server runs as a subprocess. The receiver (tests/support/webhook_receiver.py) holds the
first request open, so the server is killed while it holds the claim and waits for an answer.
After the restart the claim's lease runs out and the callback is sent again, with the same
webhook-id: delivery is at least once, and this receiver acknowledges it exactly once.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from bridges.outbox import DELIVERED, SENDING, Outbox, enqueue
from mailboxes.service import open_mailboxes
from mailboxes.webhookendpoints import WebhookEndpoints, new_secret
from mailserver import config as config_mod
from tests.conftest import FAST_HASHER
from tests.protocol.smtp.support import wait_for
from tests.protocol.smtp.test_crash import postroom, serve_on_fresh_ports, write_config
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.slow
LEASE = 4  # seconds: the killed node's claim lapses this long after it was taken


def configure(tmp_path, storage_url):  # noqa: ANN001
    """The server's config on fresh ports, with a short webhook lease."""
    cfg, ports = write_config(tmp_path, storage_url)
    with cfg.open("a", encoding="utf-8") as f:
        f.write(f"[webhooks]\ntimeout = 2\nlease = {LEASE}\nretry_base = 1\n")
    return cfg, ports


async def test_sigkill_while_sending_a_callback_delivers_it_after_restart(tmp_path, storage_url):
    cfg, _ports = configure(tmp_path, storage_url)
    assert await (await postroom(cfg, "init")).wait() == 0
    mb = await open_mailboxes(config_mod.load(cfg).storage(), hasher=FAST_HASHER)
    receiver = await Receiver(new_secret()).start()
    receiver.hang = True
    central = mb.router.central
    await WebhookEndpoints(central).set("oa", receiver.url, secret=receiver.secret)
    did = await enqueue(central, "oa", "registered", {"document": "深地税发〔2012〕12号", "district": "福田"})
    outbox = Outbox(central, node="test")
    log = tmp_path / "serve.log"
    # Each start on fresh ports: the killed server's ports were once taken again (by another test's
    # client as its ephemeral port) before the restart bound them, and the restart failed.
    server, _ = await serve_on_fresh_ports(lambda: configure(tmp_path, storage_url), log, "--workers", "1")
    try:
        await asyncio.wait_for(receiver.arrived.wait(), 60)  # the server holds the claim and waits for an answer
        assert (await outbox.callback(did)).state == SENDING
        server.send_signal(signal.SIGKILL)
        assert await server.wait() == -signal.SIGKILL
        receiver.hang = False
        receiver.release.set()
        assert (await outbox.callback(did)).state == SENDING  # nobody recorded an answer

        server, _ = await serve_on_fresh_ports(lambda: configure(tmp_path, storage_url), log, "--workers", "1")
        await wait_for(lambda: receiver.acked, timeout=LEASE + 60, what="the callback after the restart")
        await wait_for(lambda: _delivered(outbox, did), timeout=30, what="the callback settled")
        cb = await outbox.callback(did)
    finally:
        server.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.wait(), 30)
        await receiver.stop()
        await mb.close()
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert [s.headers["webhook-id"] for s in receiver.requests] == [did, did]
    assert all(s.verified for s in receiver.requests)
    assert receiver.acked == {did: 1}
    assert (cb.state, cb.attempts, cb.last_status) == (DELIVERED, 1, 204)
    assert receiver.secret not in log.read_text(errors="replace")


async def _delivered(outbox: Outbox, did: str) -> bool:
    return (await outbox.callback(did)).state == DELIVERED
