"""The route, dkim and queue subcommands, run in-process through their argparse parsers and handlers."""

from __future__ import annotations

import argparse
import io

import pytest

from delivery import dkim
from delivery.queue import NewEntry, Queue, new_queue_id
from mailboxes.errors import InvalidInput, NotFound
from mailserver.admin import Admin
from mailserver.cli_delivery import HANDLERS, register

from .support import make_config


@pytest.fixture
async def admin(tmp_path, storage_url):
    a = Admin(make_config(tmp_path / "data", storage_url), actor="test")
    await a.open()
    try:
        yield a
    finally:
        await a.close()


async def run(admin: Admin, *argv: str) -> None:
    p = argparse.ArgumentParser(prog="postroom")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    assert await HANDLERS[args.command](admin, args) == 0


async def test_routes(admin, capsys, monkeypatch):
    await run(admin, "route", "add", "District.Test.", "10.1.2.3:2525", "--tls", "required")
    monkeypatch.setattr("sys.stdin", io.StringIO("relay-secret\n"))
    await run(admin, "route", "add", "*", "smarthost.example:587", "--tls", "required", "--auth", "city@relay")
    await run(admin, "route", "list")
    out = capsys.readouterr().out
    assert "route district.test -> 10.1.2.3:2525 tls=required" in out
    assert "*\tsmarthost.example:587\ttls=required\tcity@relay" in out and "relay-secret" not in out
    await run(admin, "route", "remove", "district.test")
    with pytest.raises(NotFound, match="no route for district.test"):
        await run(admin, "route", "remove", "district.test")
    with pytest.raises(InvalidInput, match="HOST:PORT"):
        await run(admin, "route", "add", "x.test", "host:notaport")
    actions = [e["action"] for e in await admin.mb.directory.audit_entries()]
    assert actions.count("route.add") == 2 and "route.remove" in actions


async def test_dkim_generate_prints_the_record_and_trust_reads_a_key_file(admin, capsys, tmp_path):
    await run(admin, "dkim", "generate", "city.test", "--bits", "1024")
    out = capsys.readouterr().out
    assert 'postroom._domainkey.city.test. IN TXT ( "v=DKIM1; k=rsa; p=' in out
    _, txt = dkim.generate_key("district.test", "d1", 1024)
    keyfile = tmp_path / "district.txt"
    keyfile.write_text(f'd1._domainkey.district.test. IN TXT ( "{txt[:200]}" "{txt[200:]}" )\n')
    await run(admin, "dkim", "trust", "district.test", "d1", str(keyfile))
    from delivery.keys import DkimKeys
    trusted = await DkimKeys(admin.mb.router.central).trusted()
    assert trusted[("district.test", "d1")] == txt and ("city.test", "postroom") in trusted


async def test_queue_commands(admin, capsys):
    q = Queue(admin.mb.router.central, node=admin.config.hostname)
    qid = new_queue_id()
    await q.enqueue(NewEntry(qid, "a@city.test", ("x@remote.example", "y@remote.example"),
                             b"Subject: queued\r\n\r\nbody\r\n", origin="submission", submitter="a@city.test"))
    await run(admin, "queue", "list")
    assert f"\t<a@city.test>\t2 rcpt\tqueued" in capsys.readouterr().out
    await run(admin, "queue", "list", "--state", "held")
    assert qid not in capsys.readouterr().out
    await run(admin, "queue", "routes")
    assert capsys.readouterr().out.startswith("*\tMX\t1 messages\t2 rcpt\t0 urgent\toldest ")
    await run(admin, "queue", "hold", qid)
    assert {r.state for r in (await q.entry(qid)).recipients} == {"held"}
    assert await q.claim(10) == []  # held rows are not delivered
    await run(admin, "queue", "release", qid)
    await run(admin, "queue", "retry")
    await run(admin, "queue", "show", qid)
    out = capsys.readouterr().out
    assert "<x@remote.example>\tqueued\tattempts=0" in out and "Subject: queued" in out
    await run(admin, "queue", "delete", qid)
    assert await q.entries() == []
    with pytest.raises(NotFound, match=f"no queued message {qid}"):
        await run(admin, "queue", "show", qid)


@pytest.mark.interop
def test_the_postroom_command_runs_them(tmp_path):
    """Through `postroom` itself (a subprocess): wiring, stdin secrets, one-line errors, exit codes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    cfg = tmp_path / "postroom.toml"
    cfg.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\nhostname = "mail.city.test"\n')

    def postroom(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mailserver.cli", *args], cwd=root, input=stdin, text=True,
                              capture_output=True, timeout=120, env={**os.environ, "POSTROOM_CONFIG": str(cfg)})

    assert postroom("init").returncode == 0
    p = postroom("route", "add", "district.test", "10.1.2.3:25", "--tls", "required", "--auth", "city", stdin="s3\n")
    assert p.returncode == 0 and "route district.test -> 10.1.2.3:25 tls=required auth=city" in p.stdout
    p = postroom("dkim", "generate", "city.test", "--selector", "s2025", "--bits", "1024")
    assert p.returncode == 0 and 's2025._domainkey.city.test. IN TXT ( "v=DKIM1; k=rsa; p=' in p.stdout
    p = postroom("queue", "show", "NOSUCHID")
    assert p.returncode == 1 and p.stderr == "postroom: error: no queued message NOSUCHID\n"
    p = postroom("route", "add", "x.test", "host:99999")
    assert p.returncode == 1 and p.stderr.startswith("postroom: error: ") and p.stderr.count("\n") == 1
