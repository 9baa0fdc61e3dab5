"""`postroom import` and `export` end to end through `cli.main`: mbox both ways, Maildir flags, bad input."""

from __future__ import annotations

import mailbox
import os

import pytest

from .cli_support import MBOX, cfg, ready_with_user, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow


def test_mbox_import_then_export_gives_the_same_bytes(cfg, tmp_path):
    ready_with_user(cfg)
    src = tmp_path / "in.mbox"
    src.write_bytes(MBOX)
    assert "imported 3 messages" in run(cfg, "import", "--user", "wang@city.test", "--folder", "Old", "mbox",
                                        str(src)).stdout
    out = tmp_path / "out.mbox"
    assert "exported 3 messages" in run(cfg, "export", "--user", "wang@city.test", "--folder", "Old",
                                        "--mbox", str(out)).stdout
    # Run again (as after an interruption): nothing is duplicated.
    again = run(cfg, "import", "--user", "wang@city.test", "--folder", "Old", "mbox", str(src)).stdout
    assert "imported 0 messages" in again and "3 already present" in again
    from mailboxes.importexport import read_mbox
    a = [m.raw for m in read_mbox(src)]
    b = [m.raw for m in read_mbox(out)]
    assert a == b and len(a) == 3
    # And the bytes as a standard mbox reader sees them (mboxrd unquoting aside).
    msgs = list(mailbox.mbox(str(out)))
    assert [m["Subject"] for m in msgs][0] == "first"
    assert b">From here" not in a[0] and b"\nFrom here the body" in a[0].replace(b"\r\n", b"\n")
    assert b">From double quoted" in a[2]


def test_import_of_a_non_mbox_fails_cleanly(cfg, tmp_path):
    ready_with_user(cfg)
    bad = tmp_path / "x.mbox"
    bad.write_bytes(b"this is not an mbox\n")
    p = run(cfg, "import", "--user", "wang@city.test", "mbox", str(bad), ok=False)
    assert p.returncode == 1 and "not an mbox file" in p.stderr


def test_maildir_import_keeps_flags(cfg, tmp_path, storage_url):
    import asyncio
    from datetime import datetime, timezone

    from mailboxes.model import Flag
    from mailboxes.partitions import StorageConfig
    from mailboxes.service import open_mailboxes
    from tests.conftest import FAST_HASHER

    ready_with_user(cfg)
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    files = {"cur/1.host:2,FS": b"Subject: a\n\nbody a\n", "cur/2.host:2,DRT": b"Subject: b\n\nbody b\n",
             "new/3.host": b"Subject: c\n\nbody c\n"}
    for n, (name, data) in enumerate(files.items()):  # imported oldest first: UIDs 1, 2, 3
        (md / name).write_bytes(data)
        os.utime(md / name, (1_700_000_000 + n, 1_700_000_000 + n))
    assert "imported 3 messages" in run(cfg, "import", "--user", "wang@city.test", "maildir", str(md)).stdout

    async def stored() -> list:
        mb = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
        try:
            acct = await mb.directory.account("wang@city.test")
            return await mb.store.messages((await mb.store.folder(acct, "INBOX")).ref)
        finally:
            await mb.close()

    metas = asyncio.run(stored())
    assert [(m.uid, Flag(m.flags), m.keywords) for m in metas] == [
        (1, Flag.FLAGGED | Flag.SEEN, frozenset()),  # the Maildir info ":2,FS" (F flagged, S seen)
        (2, Flag.DRAFT | Flag.ANSWERED | Flag.DELETED, frozenset()),  # D draft, R replied, T trashed
        (3, Flag(0), frozenset()),  # new/: no info, unseen
    ]
    assert [m.internal_date for m in metas] == [  # the file's time is the message's arrival time
        datetime.fromtimestamp(1_700_000_000 + n, timezone.utc) for n in range(3)]
    assert [m.size for m in metas] == [len(d) + d.count(b"\n") for d in files.values()]  # stored with CRLF
