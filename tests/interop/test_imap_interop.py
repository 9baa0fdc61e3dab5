"""Debian's real IMAP clients against Postroom over implicit TLS: mbsync both ways, mutt lists and reads, fetchmail retrieves."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.protocol.imap.harness import PASSWORD, ImapServer, message

pytestmark = pytest.mark.interop


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (make test installs it)")
    return path


@pytest.fixture
def server(tmp_path):
    srv = ImapServer(tmp_path / "server").start()
    srv.deliver("alice", message("First message", "Hello from Postroom", msgid="first"))
    srv.deliver("alice", message("会议通知", "请准时参加。", msgid="meeting"))
    srv.run(srv.mb.store.create_folder(srv.accounts["alice"], "Projects"))
    srv.deliver("alice", message("In projects", "Project body", msgid="proj"), folder="Projects")
    yield srv
    srv.stop()


async def _folder_state(srv: ImapServer, name: str):
    store = srv.mb.store
    folder = await store.folder(srv.accounts["alice"], name)
    metas = await store.messages(folder.ref)
    raws = await store.raw_many(folder.ref.partition, [m.blob_id for m in metas])
    return folder, [(m, raws[m.blob_id]) for m in metas]


def test_mbsync_syncs_both_ways_and_a_second_run_changes_nothing(server, tmp_path):
    mbsync = need("mbsync")
    maildir = tmp_path / "mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    # "localhost": mbsync matches the certificate by name, not by IP address
    rc.write_text(f"""IMAPAccount postroom
Host localhost
Port {server.tls_port}
User alice@city.test
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {server.cert}

IMAPStore remote
Account postroom

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Projects
Create Both
Expunge Both
SyncState *
""")

    def run() -> None:
        res = subprocess.run([mbsync, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stdout + res.stderr

    def local_files() -> dict[str, bytes]:
        return {str(p.relative_to(maildir)): p.read_bytes() for p in maildir.rglob("*")
                if p.is_file() and p.parent.name in ("cur", "new")}

    run()  # down: the server's messages arrive in the Maildir
    files = local_files()
    bodies = list(files.values())
    assert len([f for f in files if f.startswith("INBOX/")]) == 2 and len(files) == 3
    assert any("请准时参加。".encode() in b for b in bodies)  # (mbsync keeps LF line ends locally)
    assert any(b"Subject: In projects" in b for b in bodies)
    # up: a message written offline, and a message read offline (Maildir flag S)
    (maildir / "INBOX" / "new" / "1700000000.offline.host").write_bytes(
        b"From: me@city.test\r\nTo: alice@city.test\r\nSubject: Written offline\r\n"
        b"Message-ID: <offline@city.test>\r\n\r\nDrafted on the train.\r\n")
    first = next(p for p in (maildir / "INBOX").rglob("*") if p.is_file() and b"Hello from Postroom" in p.read_bytes())
    first.rename(first.parent.parent / "cur" / (first.name + "S"))
    # and a change on the server: new mail arrives
    server.deliver("alice", message("Arrived later", "Fresh", msgid="later"))
    run()
    _folder, msgs = server.run(_folder_state(server, "INBOX"))
    by_subject = {re.search(rb"Subject: (.*)\r\n", raw).group(1): m for m, raw in msgs}
    assert set(by_subject) == {b"First message", b"=?utf-8?b?5Lya6K6u6YCa55+l?=", b"Written offline",
                               b"Arrived later"}
    assert by_subject[b"First message"].flags & 1  # \Seen came up from the Maildir
    assert any(raw.endswith(b"\r\n\r\nDrafted on the train.\r\n") for _, raw in msgs)
    assert any(b"Subject: Arrived later" in b for b in local_files().values())
    # a second run with nothing new changes nothing on either side
    before_files = local_files()
    before = server.run(_folder_state(server, "INBOX"))[0]
    run()
    after = server.run(_folder_state(server, "INBOX"))[0]
    assert (after.uidnext, after.highestmodseq) == (before.uidnext, before.highestmodseq)
    assert local_files() == before_files


def _drive(argv: list[str], home: Path, keys: bytes, ready: bytes, timeout: float = 60) -> str:
    """Run a curses client on a pseudo-terminal; type ``keys`` once ``ready`` is on screen; the screen text."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the client
        os.environ.update(TERM="xterm", LANG="C.UTF-8", LC_ALL="C.UTF-8", HOME=str(home), COLUMNS="120", LINES="40")
        os.execvp(argv[0], argv)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.2)
            if readable:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            if not sent and ready in out:
                os.write(fd, keys)
                sent = True
            if os.waitpid(pid, os.WNOHANG)[0]:
                pid = 0
                break
        else:
            raise AssertionError(f"client did not finish: {out[-2000:]!r}")
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode("utf-8", "replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0]|\x1b[=>]|[\x0e\x0f]", "", text)


def test_mutt_lists_and_reads_messages(server, tmp_path):
    mutt = need("mutt")
    out = tmp_path / "piped.txt"
    rc = tmp_path / "muttrc"
    rc.write_text(f"""set imap_user="alice@city.test"
set imap_pass="{PASSWORD}"
set folder="imaps://localhost:{server.tls_port}/"
set spoolfile="+INBOX"
set certificate_file="{server.cert}"
set ssl_force_tls=yes
set header_cache=""
set message_cachedir=""
set quit=yes
set wait_key=no
set move=no
set pipe_decode=yes
set pipe_split=yes
set charset="utf-8"
set sort=date-sent
set index_format="%4C [%s]"
""")
    # tag every message, pipe them (decoded) to a file, quit
    keys = b"T~A\r;|cat >> " + str(out).encode() + b"\rq"
    screen = _drive([mutt, "-n", "-F", str(rc)], tmp_path, keys, b"---Mutt:")
    assert "[First message]" in screen and "[会议通知]" in screen  # the index lists them, decoded
    assert "Msgs:2" in screen
    text = out.read_text("utf-8")
    assert "Subject: 会议通知" in text and "请准时参加。" in text and "Hello from Postroom" in text
    _folder, msgs = server.run(_folder_state(server, "INBOX"))
    assert len(msgs) == 2  # reading removed nothing


def test_fetchmail_retrieves_a_mailbox(server, tmp_path):
    fetchmail = need("fetchmail")
    out = tmp_path / "out.mbox"
    mda = tmp_path / "deliver.sh"
    mda.write_text(f"#!/bin/sh\ncat >> '{out}'\nprintf '\\n=====\\n' >> '{out}'\n")
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"""set no syslog
poll localhost service {server.tls_port} protocol IMAP
  user "alice@city.test" password "{PASSWORD}" is "root" here
  ssl sslcertck sslcertfile "{server.cert}"
  folder "INBOX"
  fetchall no keep
  mda "{mda}"
""")
    rc.chmod(0o600)  # fetchmail refuses a readable rc file
    res = subprocess.run([fetchmail, "-f", str(rc), "-d0"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(tmp_path)}, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    got = out.read_bytes().split(b"\n=====\n")
    assert len([g for g in got if g.strip()]) == 2
    assert any(b"Hello from Postroom" in g for g in got) and any("请准时参加。".encode() in g for g in got)
    _folder, msgs = server.run(_folder_state(server, "INBOX"))
    assert msgs == []  # retrieved, then deleted and expunged as fetchmail does without "keep"


def test_mbsync_subscribed_only_follows_the_subscription_list(server, tmp_path):
    """mbsync's SubscribedOnly lists with LSUB/LIST (SUBSCRIBED): it gets the subscribed folders, and a
    subscribed name whose folder was deleted (RFC 3501 §6.3.6 keeps it) neither appears nor breaks the run."""
    mbsync = need("mbsync")
    alice, store = server.accounts["alice"], server.mb.store
    server.run(store.create_folder(alice, "Subbed"))
    server.run(store.subscribe(alice, "Subbed"))
    server.run(store.create_folder(alice, "Gone"))
    server.run(store.subscribe(alice, "Gone"))
    server.run(store.delete_folder(alice, "Gone"))
    maildir = tmp_path / "mail"
    maildir.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount postroom
Host localhost
Port {server.tls_port}
User alice@city.test
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {server.cert}

IMAPStore remote
Account postroom
SubscribedOnly yes

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Near
SyncState *
""")
    res = subprocess.run([mbsync, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    got = {p.name for p in maildir.iterdir() if p.is_dir()}
    assert got == {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Subbed"}  # not Projects, not Gone
