"""`postroom approvals` and the label under DKIM (issue 13): held mail decided from the command line, signed as it leaves.

The two instances of test_labels_approval (the city, labels enforced; outside.test by a
static route). Mail goes in by SMTP submission; the command runs through `postroom`'s own
parser and handlers on the city's store, as an administrator types it.
"""

from __future__ import annotations

import base64
import email
import re
from email.policy import default

import dkim as dkimpy
import pytest

from mailboxes.admindir import DirectoryAdmin
from mailboxes.documents import Documents
from mailboxes.leaders import DepartmentLeaders
from mailserver import cli
from mailserver.admin import Admin, AdminError
from tests.protocol.smtp.support import make_config, wait_for
from tests.protocol.smtp.test_labels_approval import BOB, LI, ZHANG, sites, subjects, submit  # noqa: F401

CHIEF = "chief@city.test"


async def postroom(admin: Admin, *argv: str) -> int:
    args = cli.build_parser().parse_args(list(argv))
    return await cli.HANDLERS[args.command](admin, args)


@pytest.fixture
async def admin(sites, tmp_path, storage_url):
    a = Admin(make_config(tmp_path / "city", storage_url, labels={"enabled": True, "approvers": "office@city.test"}),
              actor="cli:test")
    await a.open()
    try:
        yield a
    finally:
        await a.close()


@pytest.mark.slow
async def test_an_administrator_approves_and_rejects_from_the_command_line(sites, admin, capsys):
    city, outside = sites
    await city.mb.directory.add_department("tax", "税政处")
    await city.add_user(CHIEF, department="tax")
    await DirectoryAdmin(city.mb.directory).update_account(ZHANG, department="tax")
    assert await postroom(admin, "department", "set-leader", "tax", CHIEF) == 0
    assert "department tax leader: chief@city.test" in capsys.readouterr().out

    await submit(city, "release me", [BOB], extra="X-Postroom-Classification: 敏感\r\n")
    await submit(city, "return me", [BOB], extra="X-Postroom-Classification: 敏感\r\n")
    held = {h.subject: h for h in await city.parts.submitter.held.pending()}
    assert {s: h.approver for s, h in held.items()} == {"release me": CHIEF, "return me": CHIEF}
    assert len(await city.inbox(CHIEF)) == 2  # the leader is asked by mail

    assert await postroom(admin, "approvals", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(held["release me"].id), str(held["return me"].id)]
    assert all(f"\t敏感\t{ZHANG}\t{CHIEF}\t{BOB}\t" in ln for ln in lines)
    assert await postroom(admin, "approvals", "show", str(held["release me"].id)) == 0
    shown = capsys.readouterr().out
    assert f"approver: {CHIEF}" in shown and "Subject: release me" in shown

    assert await postroom(admin, "approvals", "approve", str(held["release me"].id)) == 0
    assert await postroom(admin, "approvals", "reject", str(held["return me"].id), "--reason", "不宜 外发") == 0
    out = capsys.readouterr().out
    assert f"held message {held['release me'].id} released ({BOB})" in out
    with pytest.raises(AdminError, match="decided already"):
        await postroom(admin, "approvals", "approve", str(held["release me"].id))
    with pytest.raises(SystemExit):  # a rejection needs its reason
        await postroom(admin, "approvals", "reject", str(held["return me"].id))

    city.parts.worker.poke()  # the command's queue is not the server's object: tell the worker, as a restart would
    await wait_for(lambda: _subjects_are(outside, ["release me"]), what="the released message at outside.test")
    [notice] = [m for m in await city.inbox(ZHANG) if b"Not approved by cli:test" in m]
    text = _plain(notice)
    assert "5.7.1" in text and "不宜 外发" in text
    assert await city.parts.submitter.held.pending() == []
    entries = [(e["actor"], e["action"], e["target"]) for e in await city.mb.directory.audit_entries(100)]
    assert ("cli:test", "approved", held["release me"].queue_id) in entries
    assert ("cli:test", "rejected", held["return me"].queue_id) in entries
    assert ("cli:test", "department.leader", "tax") in entries


@pytest.mark.slow
async def test_the_label_header_is_covered_by_the_dkim_signature_as_it_leaves(sites):
    """A partner gets 内部 mail at once, held 敏感 mail once approved; dkimpy verifies both, and fails
    both once the label is changed on the way (the header is in h=)."""
    city, outside = sites
    from delivery.approval import Administrator, Approvals

    _, txt = await city.parts.keys.generate("city.test", "s1", 1024)
    await Documents(city.mb.router.central).add_partner("outside", "outside.test")
    await submit(city, "partner", [BOB])  # the default label, 内部: partners may have it at once
    # 【敏感】 as a Chinese mail client types and encodes it (RFC 2047): held, a partner is beyond its reach.
    await submit(city, f"=?UTF-8?B?{base64.b64encode('【敏感】sensitive'.encode()).decode()}?=", [BOB])
    [held] = await city.parts.submitter.held.pending()
    assert held.subject == "【敏感】sensitive" and held.label == "敏感"
    await Approvals(city.parts.submitter).approve(held.id, Administrator("cli:test"))
    city.parts.worker.poke()
    await wait_for(lambda: _subjects_are(outside, ["【敏感】sensitive", "partner"]), what="both at outside.test")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.city.test."
        return txt.encode()

    for raw in await outside.inbox(BOB):
        label = "内部" if "partner" in str(email.message_from_bytes(raw, policy=default)["Subject"]) else "敏感"
        assert f"X-Postroom-Classification: {label}\r\n".encode() in raw
        sig = re.search(rb"DKIM-Signature:(.*?)\r\n(?=\S)", raw, re.S).group(1)
        signed = re.sub(rb"\s", b"", re.search(rb"\bh=([^;]*)", sig).group(1)).lower().split(b":")
        assert b"x-postroom-classification" in signed and b"subject" in signed
        assert dkimpy.verify(raw, dnsfunc=dns)
        other = "公开" if label != "公开" else "内部"
        tampered = raw.replace(f"X-Postroom-Classification: {label}".encode(),
                               f"X-Postroom-Classification: {other}".encode())
        assert not dkimpy.verify(tampered, dnsfunc=dns)
        added = raw.replace(b"\r\n\r\n", f"\r\nX-Postroom-Classification: {other}\r\n\r\n".encode(), 1)
        assert not dkimpy.verify(added, dnsfunc=dns)  # a second label below the signed one is caught too


async def _subjects_are(inst, want: list[str]) -> bool:
    return sorted(await subjects(inst, BOB)) == sorted(want)


def _plain(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=default)
    return "".join(p.get_content() for p in msg.walk() if p.get_content_type() in ("text/plain",
                                                                                    "message/delivery-status")
                   and not p.is_multipart() and isinstance(p.get_content(), str))
