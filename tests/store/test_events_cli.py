"""`postroom source add/list/revoke` and `postroom events list/show/resend` end to end through `cli.main`."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from mailboxes.apitokens import ApiTokens
from mailboxes.events import SENT, EventStore, NewEvent
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER

from .test_admin_cli import cfg, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow


def _store(storage_url: str, action):
    async def go():
        mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
        store = EventStore(mb.router.central)
        try:
            return await action(mb, store)
        finally:
            await store.close()
            await mb.close()
    return asyncio.run(go())


def test_sources_and_events_from_the_command_line(cfg, storage_url):  # noqa: F811
    run(cfg, "init", "--domain", "city.test")
    run(cfg, "domain", "add", "city.test")
    run(cfg, "user", "add", "alice@city.test", "--password-stdin", stdin="pw-alice-1\n")
    out = run(cfg, "source", "add", "OA").stdout
    m = re.fullmatch(r"source oa token (\d+): (pr_[A-Za-z0-9_-]{43})\n\(shown once: only its SHA-256 is stored\)\n", out)
    assert m, out
    assert run(cfg, "source", "add", "oa", ok=False).stderr == "postroom: error: source oa already exists\n"
    assert re.fullmatch(r"oa\tcreated \S+ \S+\tactive\n", run(cfg, "source", "list").stdout)
    assert m.group(2) not in run(cfg, "token", "list").stdout  # shown once only
    assert f"{m.group(1)}\tsource\tsource oa\tserver\t" in run(cfg, "token", "list").stdout

    async def post_and_send(mb, store):
        alice = await mb.directory.account("alice@city.test")
        [(ev, _)] = await store.accept([NewEvent(1, "ev-1", "reminder", "PO-1", "normal", "zh",
                                                 {"title": "请审批", "body": "b", "link": "", "data": None,
                                                  "recipients": ["alice@city.test"]}, b"f" * 32,
                                                 ((alice.id, alice.address),), ({"recipient": "x", "reason": "r"},),
                                                 "QID1")])
        [claimed] = await store.claim(1)
        await store.settle(claimed.id, SENT)
        return ev.id
    eid = _store(storage_url, post_and_send)
    listed = run(cfg, "events", "list").stdout
    assert listed.startswith(f"{eid}\toa\tev-1\treminder\tsent\t") and listed.endswith("\t1 recipients\t请审批\n")
    assert run(cfg, "events", "list", "--state", "pending").stdout == ""
    shown = json.loads(run(cfg, "events", "show", str(eid)).stdout)
    assert shown["state"] == "sent" and shown["reached"] == ["alice@city.test"] and shown["item"] == "PO-1"
    assert shown["unknown"] == [{"recipient": "x", "reason": "r"}] and shown["title"] == "请审批"
    out = run(cfg, "events", "resend", str(eid)).stdout
    assert re.fullmatch(rf"event {eid} queued again as [A-Z2-7]{{16}}\n", out)
    assert json.loads(run(cfg, "events", "show", str(eid)).stdout)["state"] == "pending"
    bad = run(cfg, "events", "resend", str(eid), ok=False)
    assert bad.returncode == 1 and "only a sent or failed event is resent" in bad.stderr
    assert run(cfg, "events", "show", "999", ok=False).stderr == "postroom: error: no event 999\n"

    rotated = re.fullmatch(r"source oa token (\d+): (pr_[A-Za-z0-9_-]{43})\n.*\n",
                           run(cfg, "source", "token", "oa").stdout)  # another token, to rotate
    assert rotated and rotated.group(1) != m.group(1)

    assert run(cfg, "source", "revoke", "oa").stdout == "revoked source oa\n"
    assert "\trevoked " in run(cfg, "source", "list").stdout

    async def tokens_gone(mb, store):
        return [await ApiTokens(mb.router.central).find(t.group(2)) for t in (m, rotated)]
    assert _store(storage_url, tokens_gone) == [None, None]
    bad = run(cfg, "source", "token", "oa", ok=False)  # a revoked source gets no new token
    assert bad.returncode == 1 and "source oa is revoked" in bad.stderr

    async def audited(mb, store):
        return [(e["action"], e["target"], json.loads(e["detail"]).get("via"))
                for e in reversed(await mb.directory.audit_entries(100)) if e["action"].startswith("source.")]
    assert _store(storage_url, audited) == [("source.add", "oa", "cli"), ("source.token", "oa", "cli"),
                                            ("source.revoke", "oa", "cli")]
    assert run(cfg, "source", "revoke", "nope", ok=False).stderr == "postroom: error: no source nope\n"
