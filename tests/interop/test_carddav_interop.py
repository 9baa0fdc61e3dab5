"""Debian's vdirsyncer against Postroom's CardDAV: discovery from the server's root, a full sync, a change synced again."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mailboxes.admindir import DirectoryAdmin
from tests.web.harness import PASSWORD, WebServer
from tests.web.test_addressbook import org

pytestmark = pytest.mark.interop


def _config(tmp: Path, url: str) -> Path:
    cfg = tmp / "vdirsyncer.conf"
    cfg.write_text(f"""
[general]
status_path = "{tmp}/status/"

[pair org]
a = "org_remote"
b = "org_local"
collections = ["from a"]
conflict_resolution = "a wins"

[storage org_remote]
type = "carddav"
url = "{url}/"
username = "alice@city.test"
password = "{PASSWORD}"
read_only = true

[storage org_local]
type = "filesystem"
path = "{tmp}/cards/"
fileext = ".vcf"
""")
    (tmp / "cards").mkdir()
    return cfg


def _run(binary: str, cfg: Path, *args: str) -> str:
    done = subprocess.run([binary, "-c", str(cfg), *args], input="y\n" * 4, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _cards(tmp: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (tmp / "cards").rglob("*.vcf")}


async def test_vdirsyncer_discovers_syncs_and_follows_a_change(tmp_path):
    binary = shutil.which("vdirsyncer")
    if binary is None:
        pytest.skip("vdirsyncer is not installed (make test installs it)")
    srv = WebServer(tmp_path / "server").start()
    try:
        await org(srv)
        cfg = _config(tmp_path, srv.url)
        _run(binary, cfg, "discover", "org")  # RFC 6764 well-known, principal, home, the one book
        _run(binary, cfg, "sync", "org")
        cards = _cards(tmp_path)
        assert len(cards) == 4 and any("FN:王芳" in c for c in cards.values()), cards
        assert not any("王离职" in c for c in cards.values())  # disabled: not listed

        assert all("\nREV:" in c for c in cards.values()), cards  # RFC 6350 §6.7.4
        srv.mb.directory.clock = lambda: datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        await srv.loop_run(DirectoryAdmin(srv.mb.directory).update_account("wangfang@city.test",
                                                                            display_name="王芳芳"))
        _run(binary, cfg, "sync", "org")
        cards = _cards(tmp_path)
        [card] = [c for c in cards.values() if "FN:王芳芳" in c]
        assert len(cards) == 4 and "REV:20300102T030405Z" in card, cards
    finally:
        srv.stop()
