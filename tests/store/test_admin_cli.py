"""The `postroom` command end to end in a subprocess: init, directory commands, import/export, errors."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each command is a fresh interpreter (about 0.5 s); the quick subset leaves these to `make test`.
pytestmark = pytest.mark.slow


def run(cfg: Path, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "POSTROOM_CONFIG": str(cfg)}
    p = subprocess.run([sys.executable, "-m", "mailserver.cli", *args], cwd=ROOT, env=env, input=stdin,
                       capture_output=True, text=True, timeout=120)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


@pytest.fixture
def cfg(tmp_path, storage_url):
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\nhostname = "mail.city.test"\n'
                 f'[storage]\nurl = "{storage_url}"\n')
    return c


def test_init_demo_creates_store_cert_and_accounts_once(cfg, tmp_path):
    out = run(cfg, "init", "--demo", "--domain", "city.test").stdout
    assert "zhang.wei@city.test password" in out and "li.na@city.test password" in out
    assert (tmp_path / "data" / "tls" / "cert.pem").exists()
    assert oct((tmp_path / "data" / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    again = run(cfg, "init", "--demo", "--domain", "city.test").stdout
    assert "password" not in again  # passwords are shown once
    users = run(cfg, "user", "list").stdout
    assert "zhang.wei@city.test\tadmin" in users and "李娜" in users
    assert run(cfg, "config", "check").stdout.strip() == "configuration OK"


def test_directory_commands_and_readable_errors(cfg):
    run(cfg, "init")
    run(cfg, "domain", "add", "City.Test.")
    assert run(cfg, "domain", "list").stdout.split() == ["city.test"]
    run(cfg, "department", "add", "bureau", "市税务局", "--kind", "bureau")
    run(cfg, "department", "add", "finance", "财务处", "--parent", "bureau")
    assert "finance\tdepartment\tbureau\t财务处" in run(cfg, "department", "list").stdout
    run(cfg, "user", "add", "wang@city.test", "--name", "王芳", "--department", "finance", "--password-stdin",
        stdin="s3cret\n")
    p = run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="x\n", ok=False)
    assert p.returncode == 1 and p.stderr.strip() == "postroom: error: wang@city.test is already an account"
    p = run(cfg, "user", "add", "bad address", ok=False)
    assert p.returncode == 1 and p.stderr.startswith("postroom: error: invalid address") and "\n" not in p.stderr.strip()
    p = run(cfg, "user", "add", "x@elsewhere.test", ok=False)
    assert "not a local domain" in p.stderr
    run(cfg, "group", "add", "all@city.test", "--name", "全体", "--policy", "members")
    assert run(cfg, "group", "members", "all@city.test", "--add", "wang@city.test").stdout.split() == ["wang@city.test"]
    run(cfg, "alias", "add", "fang@city.test", "wang@city.test")
    assert "fang@city.test\twang@city.test" in run(cfg, "alias", "list").stdout
    run(cfg, "user", "disable", "wang@city.test")
    assert "disabled" in run(cfg, "user", "list").stdout
    p = run(cfg, "domain", "remove", "city.test", ok=False)
    assert p.returncode == 1 and "still has 1 accounts" in p.stderr
    p = run(cfg, "user", "passwd", "nobody@city.test", "--password-stdin", stdin="x\n", ok=False)
    assert "no account nobody@city.test" in p.stderr


def test_commands_before_init_say_so(tmp_path):
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\n')
    p = run(c, "user", "list", ok=False)
    assert p.returncode == 1 and "run `postroom init` first" in p.stderr
    assert not (tmp_path / "data" / "postroom.db").exists()


def test_config_check_reports_every_problem(tmp_path):
    c = tmp_path / "bad.toml"
    c.write_text('[server]\nhostname = 5\nbogus = 1\n[listen]\nsmtp = "nowhere"\n[storage]\nmode = "weird"\n'
                 '[nosuch]\nx = 1\n')
    p = run(c, "config", "check", ok=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2
    assert len(lines) == 5, lines
    assert any("[server] hostname: expected a string" in line for line in lines)
    assert any("[server] bogus: unknown key" in line for line in lines)
    assert any("[listen] smtp" in line for line in lines)
    assert any("[storage] mode: must be one of" in line for line in lines)
    assert any("[nosuch]: unknown section" in line for line in lines)


MBOX = b"""From alice@city.test Mon Nov  2 10:00:00 2026
From: Alice <alice@city.test>
To: wang@city.test
Subject: first
Status: RO

Hello.
>From here the body has a quoted From line.
From the middle of a line is fine.

From bob@city.test Tue Nov  3 11:00:00 2026
From: Bob <bob@city.test>
To: wang@city.test
Subject: =?GB2312?B?udjT2rXnxNQ=?=
Content-Type: text/plain; charset=GB2312
Content-Transfer-Encoding: 8bit

\xc7\xeb\xb8\xf7\xb2\xbf\xc3\xc5\xb1\xa8\xcb\xcd\xb2\xc4\xc1\xcf\xa1\xa3

From carol@city.test Wed Nov  4 12:00:00 2026
From: carol@city.test
Subject: third

>>From double quoted
last line
"""


def test_mbox_import_then_export_gives_the_same_bytes(cfg, tmp_path):
    run(cfg, "init")
    run(cfg, "domain", "add", "city.test")
    run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="pw\n")
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
    run(cfg, "init")
    run(cfg, "domain", "add", "city.test")
    run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="pw\n")
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

    run(cfg, "init")
    run(cfg, "domain", "add", "city.test")
    run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="pw\n")
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


def test_archive_command_moves_a_year(tmp_path, storage_url):
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\n[storage]\nurl = "{storage_url}"\nmode = "year"\n')
    run(c, "init")
    run(c, "domain", "add", "city.test")
    run(c, "user", "add", "wang@city.test", "--password-stdin", stdin="pw\n")
    src = tmp_path / "old.mbox"
    src.write_bytes(MBOX.replace(b" 2026\n", b" 2025\n"))
    run(c, "import", "--user", "wang@city.test", "mbox", str(src))
    assert "archived 3 messages of 2025 from 1 folders" in run(c, "archive", "--year", "2025").stdout
    out = tmp_path / "arch.mbox"
    assert "exported 3 messages" in run(c, "export", "--user", "wang@city.test", "--folder", "Archive/2025/INBOX",
                                        "--mbox", str(out)).stdout
    p = run(c, "archive", "--year", "2999", ok=False)
    assert p.returncode == 1 and "closed year" in p.stderr


def test_user_remove_deletes_the_mail_and_sweep_reports(cfg, tmp_path, storage_url):
    import asyncio

    from sqlalchemy import text

    from mailboxes.db import open_database
    run(cfg, "init")
    run(cfg, "domain", "add", "city.test")
    run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="pw\n")
    src = tmp_path / "in.mbox"
    src.write_bytes(MBOX)
    run(cfg, "import", "--user", "wang@city.test", "--folder", "Old", "mbox", str(src))
    out = run(cfg, "user", "sweep").stdout
    assert out.strip() == "main: 0 bodies, 0 search rows, 0 files removed; usage corrected for 0 accounts"
    assert run(cfg, "user", "remove", "wang@city.test").stdout.strip() == "removed wang@city.test and its 3 messages"

    async def count() -> tuple[int, int]:
        db = open_database(storage_url)
        try:
            async with db.read() as conn:
                return ((await conn.execute(text("SELECT count(*) FROM blobs"))).scalar(),
                        (await conn.execute(text("SELECT count(*) FROM folders"))).scalar())
        finally:
            await db.dispose()
    assert asyncio.run(count()) == (0, 0)


async def test_reindex_command_rebuilds_the_indexes_of_blobs_in_a_blob_directory(tmp_path, storage_url):
    """Migration mai0004 reindexes blobs kept in the database; `postroom reindex` reaches those kept as files."""
    from sqlalchemy import text

    from mailboxes.partitions import StorageConfig
    from mailboxes.service import open_mailboxes
    from tests.conftest import FAST_HASHER

    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\n[storage]\nurl = "{storage_url}"\n'
                 f'blob_dir = "{tmp_path}/blobs"\n')
    run(c, "init")
    run(c, "domain", "add", "city.test")
    run(c, "user", "add", "wang@city.test", "--password-stdin", stdin="pw\n")
    src = tmp_path / "in.mbox"
    src.write_bytes(MBOX)
    run(c, "import", "--user", "wang@city.test", "mbox", str(src))
    mb = await open_mailboxes(StorageConfig(url=storage_url, blob_dir=str(tmp_path / "blobs")), hasher=FAST_HASHER)
    try:
        async with mb.router.central.write() as conn:  # as if stored before the substring index existed
            await conn.execute(text("DELETE FROM blob_text"))
        acct = await mb.directory.account("wang@city.test")
        ref = (await mb.store.folder(acct, "INBOX")).ref
        assert await mb.store.search_substring(ref, "body", "iddle of a l") == set()
        assert "reindexed 3 messages" in run(c, "reindex").stdout
        assert await mb.store.search_substring(ref, "body", "iddle of a l") == {1}
    finally:
        await mb.close()
    p = run(c, "reindex", "--partition", "no such/name", ok=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
