"""`postroom hold` and `postroom retention` end to end in a subprocess: a held message survives a run and `user remove`, release lets them proceed."""

from __future__ import annotations

import asyncio

import pytest

from mailboxes.documents import INCOMING
from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes

from .cli_support import MBOX, cfg, ready_with_user, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow


def test_hold_blocks_retention_and_removal_until_released(cfg, tmp_path, storage_url):
    ready_with_user(cfg)
    src = tmp_path / "in.mbox"
    src.write_bytes(MBOX)
    run(cfg, "import", "--user", "wang@city.test", "mbox", str(src))  # dated November 2026
    out = run(cfg, "hold", "add", "case 1", "--account", "wang@city.test", "--subject", "first").stdout
    assert out.strip() == "placed legal hold #1 (case 1) on account wang@city.test, subject=first"
    assert run(cfg, "retention", "set", "inbox", "7").stdout.strip() == "inbox: after 7 days, delete"
    dry = run(cfg, "retention", "run", "--dry-run").stdout
    assert "wang@city.test\tINBOX\tdelete\t3 due\t2 would go\t1 kept by a legal hold" in dry
    assert "dry run: 1 accounts, 0 deleted, 0 archived, 1 kept by legal holds" in dry
    assert "1 accounts, 2 deleted, 0 archived, 1 kept by legal holds" in run(cfg, "retention", "run").stdout
    p = run(cfg, "user", "remove", "wang@city.test", ok=False)
    assert p.returncode == 1 and "legal hold #1 (case 1)" in p.stderr
    assert run(cfg, "hold", "list").stdout.startswith("#1\tcase 1\taccount wang@city.test, subject=first")
    assert "released legal hold #1 (case 1)" in run(cfg, "hold", "release", "1").stdout
    assert run(cfg, "hold", "list").stdout == ""
    assert "1 accounts, 1 deleted" in run(cfg, "retention", "run").stdout
    assert run(cfg, "user", "remove", "wang@city.test").stdout.strip() == "removed wang@city.test and its 0 messages"
    assert "account #1 (removed)" in run(cfg, "hold", "list", "--all").stdout

    async def actions() -> list[str]:
        mb = await open_mailboxes(StorageConfig(url=storage_url))
        try:
            return [e["action"] for e in await mb.directory.audit_entries()]
        finally:
            await mb.close()
    done = asyncio.run(actions())
    assert {"hold.place", "hold.release", "retention.set", "retention.run", "user.remove"} <= set(done)


def test_retention_run_leaves_the_document_register_alone(cfg, tmp_path, storage_url):
    """`postroom retention run` with [documents] address set: its 收文 keeps a registered document's copy."""
    cfg.write_text(cfg.read_text() + '[documents]\norg = "futian"\naddress = "documents@city.test"\n')
    ready_with_user(cfg, "documents@city.test")
    src = tmp_path / "in.mbox"
    src.write_bytes(MBOX)
    for folder in (INCOMING, "Scratch"):
        run(cfg, "import", "--user", "documents@city.test", "--folder", folder, "mbox", str(src))  # November 2026
    run(cfg, "retention", "set", "other", "7")
    out = run(cfg, "retention", "run").stdout
    assert "documents@city.test\tScratch\tdelete\t3 due\t3 did go" in out and INCOMING not in out
    assert "1 accounts, 3 deleted" in out

    async def counts() -> list[int]:
        mb = await open_mailboxes(StorageConfig(url=storage_url))
        try:
            acct = await mb.directory.account("documents@city.test")
            return [len(await mb.store.messages((await mb.store.folder(acct, f)).ref)) for f in (INCOMING, "Scratch")]
        finally:
            await mb.close()
    assert asyncio.run(counts()) == [3, 0]
