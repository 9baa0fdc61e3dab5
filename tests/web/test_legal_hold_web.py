"""Webmail delete under a legal hold (issue 13.4): deleting for ever in Trash is refused with 409 and the message stays."""

from __future__ import annotations

from .harness import csrf_of
from .mails import plain_mail
from .test_mail import _flags, _imap


async def test_delete_for_ever_of_a_held_message_is_refused_and_it_stays(web, client):
    web.deliver("alice", plain_mail("held one"), folder="Trash")
    web.deliver("alice", plain_mail("free one"), folder="Trash")
    web.run(web.mb.store.holds.add("case 9", actor="admin@city.test", criteria={"subject": "held"}))
    _, page = await client.sign_in()
    token = csrf_of(page)

    async def delete(uid: int) -> int:
        r, _ = await client.post("/message/action", {"csrf": token, "folder": "Trash", "uid": str(uid),
                                                     "do": "delete"}, allow_redirects=False)
        return r.status
    assert await delete(1) == 409
    assert await delete(2) == 303
    imap = _imap(web)
    try:
        assert list(_flags(imap, "Trash")) == [1]
    finally:
        imap.logout()
