"""`postroom archive`, `user remove`/`user sweep` and `reindex` end to end through `cli.main`."""

from __future__ import annotations

import asyncio

import pytest

from .cli_support import MBOX, cfg, ready_with_user, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow


def test_archive_command_moves_a_year(tmp_path, storage_url):
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\n[storage]\nurl = "{storage_url}"\nmode = "year"\n')
    ready_with_user(c)
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
    from sqlalchemy import text

    from mailboxes.db import open_database
    ready_with_user(cfg)
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

    from mailboxes.db import open_database

    from mailboxes.partitions import StorageConfig
    from mailboxes.service import open_mailboxes
    from tests.conftest import FAST_HASHER

    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\n[storage]\nurl = "{storage_url}"\n'
                 f'blob_dir = "{tmp_path}/blobs"\n')
    await asyncio.to_thread(ready_with_user, c)  # it runs a loop of its own
    src = tmp_path / "in.mbox"
    src.write_bytes(MBOX)
    run(c, "import", "--user", "wang@city.test", "mbox", str(src))
    db = open_database(storage_url)  # not through a Store: no indexer of its own at open
    try:
        async with db.read() as conn:  # the import indexed what it stored before it returned
            assert (await conn.execute(text("SELECT count(*) FROM blob_index_pending"))).scalar() == 0
            assert (await conn.execute(text("SELECT count(*) FROM blob_text"))).scalar() == 3
    finally:
        await db.dispose()
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
