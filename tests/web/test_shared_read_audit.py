"""Reading another account's shared folder in the webmail (open, frame, attachment) is audited like the IMAP FETCH; own reads are not (issue 13)."""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp
import pytest
from imapclient import IMAPClient

from mailboxes.model import Flag

from .harness import PASSWORD, csrf_of
from .mails import ATTACHMENT_DATA, gbk_mail, plain_mail

DOCS = "Shared/bob@city.test/Docs"


def _share(web, rights: str) -> None:
    owner = IMAPClient("127.0.0.1", port=web.port, ssl=False)
    try:
        owner.login("bob@city.test", PASSWORD)
        owner.create_folder("Docs")
        owner.setacl("Docs", "alice@city.test", rights)
    finally:
        owner.logout()
    web.deliver("bob", gbk_mail(to="bob@city.test"), folder="Docs")


def _reads(web) -> list[dict]:
    async def go() -> list[dict]:
        await web.mb.directory.audit_buffer.flush()
        return list(reversed(await web.mb.directory.audit_entries(200, activity=True)))
    return [e for e in web.run(go()) if e["action"] == "mailbox.read"]


async def test_opening_and_downloading_from_a_shared_folder_is_audited_once_each(web, client):
    _share(web, "lr")
    web.deliver("alice", plain_mail("alice's own"))
    _, page = await client.sign_in()
    r, page = await client.get("/mail")
    assert f'folder={quote(DOCS, safe="")}' in page and "bob@city.test/Docs" in page  # in the folder tree
    r, page = await client.get("/mail", params={"folder": DOCS})
    assert r.status == 200 and "关于第三季度报告的通知" in page
    assert _reads(web) == []  # the list shows headers only: not a body read
    q = {"folder": DOCS, "uid": "1"}
    r, page = await client.get("/message", params=q)
    assert r.status == 200 and "关于第三季度报告的通知" in page
    assert "/message/action" not in page  # read-only: no flag, move or delete offered
    assert 'id="reply"' in page and 'id="forward"' in page  # reading is enough to answer or pass it on
    r, _ = await client.get("/message/body", params=q)  # the frame of the same opening
    assert r.status == 200
    r, _ = await client.get("/message", params=q)  # opened again in this session
    r, data = await client.download("/message/part", params={**q, "part": "2"})
    assert r.status == 200 and data == ATTACHMENT_DATA
    r, _ = await client.get("/message", params={"folder": "INBOX", "uid": "1"})  # alice's own mail
    assert r.status == 200
    reads = _reads(web)
    assert [(e["actor"], e["target"]) for e in reads] == [("alice@city.test", "bob@city.test/Docs")] * 2
    assert [json.loads(e["detail"]) for e in reads] == [
        {"protocol": "webmail", "uids": [1], "messages": 1},
        {"protocol": "webmail", "uids": [1], "messages": 1, "attachment": "2"}]
    # Reading changed nothing of bob's: no \Seen, and the actions refuse the shared folder.
    metas = web.run(web.mb.store.messages((_folder(web, "bob", "Docs")).ref))
    assert [m.flags for m in metas] == [0]
    for do in ("read", "flag", "delete"):
        r, _ = await client.post("/message/action", {"csrf": csrf_of(page), "folder": DOCS, "uid": "1", "do": do},
                                 allow_redirects=False)
        assert r.status in (403, 404), do
    assert [m.flags for m in web.run(web.mb.store.messages((_folder(web, "bob", "Docs")).ref))] == [0]


async def test_with_the_seen_right_opening_marks_it_read_for_the_owner_too(web, client):
    """RFC 4314 s: as an IMAP FETCH of the body in the shared folder would (lr alone changes nothing: above)."""
    _share(web, "lrs")
    await client.sign_in()
    r, _ = await client.get("/message", params={"folder": DOCS, "uid": "1"})
    assert r.status == 200
    owner = IMAPClient("127.0.0.1", port=web.port, ssl=False)
    try:
        owner.login("bob@city.test", PASSWORD)
        owner.select_folder("Docs", readonly=True)
        assert b"\\Seen" in owner.get_flags([1])[1]
    finally:
        owner.logout()
    assert len(_reads(web)) == 1


@pytest.mark.parametrize("rights, answered", [("lr", False), ("lrw", True)])
async def test_a_shared_message_can_be_replied_to_and_forwarded(web, client, rights, answered):
    """Reply and forward open the original in the shared folder (audited once); \\Answered only with w."""
    _share(web, rights)
    _, page = await client.sign_in()
    q = {"folder": DOCS, "uid": "1"}
    r, page = await client.get("/compose", params={**q, "mode": "reply"})
    assert r.status == 200 and 'value="Re: 关于第三季度报告的通知"' in page and 'value="wang@district.test"' in page
    r, _ = await client.post("/compose", _form(csrf_of(page), mode="reply", to="bob@city.test", cc="",
                                               subject="Re: 关于第三季度报告的通知", body="收到。", source_folder=DOCS,
                                               source_uid="1"))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    r, page = await client.get("/compose", params={**q, "mode": "forward"})
    assert r.status == 200 and 'value="Fwd: 关于第三季度报告的通知"' in page
    r, _ = await client.post("/compose", _form(csrf_of(page), mode="forward", to="bob@city.test", cc="",
                                               subject="Fwd: 关于第三季度报告的通知", body="FYI", source_folder=DOCS,
                                               source_uid="1"))
    assert r.status == 200
    inbox = web.run(web.mb.store.messages(_folder(web, "bob", "INBOX").ref))
    assert len(inbox) == 2  # the reply and the forward reached the folder's owner
    raws = [web.run(web.mb.store.raw(_folder(web, "bob", "INBOX").ref.partition, m.blob_id)) for m in inbox]
    assert b"message/rfc822" in raws[1] and b"wang@district.test" in raws[1]  # the original along, whole
    [bobs] = web.run(web.mb.store.messages(_folder(web, "bob", "Docs").ref))
    assert bool(bobs.flags & Flag.ANSWERED) is answered and not bobs.flags & Flag.SEEN
    assert [e["target"] for e in _reads(web)] == ["bob@city.test/Docs"]  # one read of message 1 in this session


def _form(token: str, **fields: str) -> aiohttp.FormData:
    f = aiohttp.FormData(quote_fields=False)
    f.add_field("csrf", token)
    for k, v in fields.items():
        f.add_field(k, v)
    return f


def _folder(web, user: str, name: str):
    return web.run(web.mb.store.folder(web.accounts[user], name))


async def test_without_the_read_right_a_shared_folder_is_not_found(web, client):
    _share(web, "l")
    await client.sign_in()
    for path, q in (("/mail", {"folder": DOCS}), ("/message", {"folder": DOCS, "uid": "1"}),
                    ("/message/body", {"folder": DOCS, "uid": "1"}),
                    ("/message/part", {"folder": DOCS, "uid": "1", "part": "2"})):
        r, body = await client.get(path, params=q)
        assert r.status == 404 and "关于" not in body, path
    assert _reads(web) == []


async def test_the_owners_own_reads_are_not_audited(web, client):
    _share(web, "lr")
    await client.sign_in("bob@city.test")
    for path, q in (("/message", {"folder": "Docs", "uid": "1"}), ("/message/part", {"folder": "Docs", "uid": "1",
                                                                                     "part": "2"})):
        r, _ = await client.get(path, params=q)
        assert r.status == 200
    assert _reads(web) == []
