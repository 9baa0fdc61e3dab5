"""Other accounts' folders shared with the signed-in account (RFC 4314 right r), read-only in the webmail, each read audited.

A shared folder is named as IMAP names it (RFC 2342 other users' namespace):
``Shared/<owner address>/<folder>``. The webmail lists and reads it (opening a message,
its HTML frame, an attachment) but changes nothing there: its Folder comes back with that
name and read_only set, and the message actions (flag, move, delete) only ever open the
account's own folders. Reading is enough to reply to or forward a message (compose opens
the original the same way); opening it marks it \\Seen only with the right s (RFC 4314 §2.1,
as an IMAP FETCH in the shared folder does), and a reply marks it \\Answered only with w.
Every first body read of a message, and every attachment download, writes a buffered
`mailbox.read` audit entry (protocol webmail), as the IMAP shared-folder FETCH does
(mailserver/imap/cmd_message.py); the owner's own reads are never audited.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from mailboxes import acl
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.model import Account, Folder

SHARED = acl.SHARED
DELIMITER = "/"
SEEN_MAX = 10_000  # (session, folder, uid, part) reads remembered per process, so an open is one entry, not three


async def folder(store, account: Account, name: str) -> tuple[Folder, str | None, str]:
    """(the folder `name` names for `account`, the owner's address when it is another account's, the rights
    the account holds there: "" for its own folder, where it may do anything).

    NotFound unless it is the account's own folder or one shared with it with the right to read."""
    shared = acl.split_shared(name)
    if shared is None:
        return await store.folder(account, name), None, ""
    try:
        sf = await acl.shared_folder(store, account, *shared)
    except InvalidInput:
        raise NotFound(f"no folder {name}") from None
    if sf.owner.id == account.id or "r" not in sf.rights:
        raise NotFound(f"no folder {name}")
    return _as_shared(sf), sf.owner.address, sf.rights


def may(owner: str | None, rights: str, right: str) -> bool:
    """Whether the account may do what ``right`` allows (RFC 4314) in a folder opened by `folder`."""
    return owner is None or right in rights


def _as_shared(sf: acl.SharedFolder) -> Folder:
    return replace(sf.folder, name=DELIMITER.join((SHARED, sf.owner.address, sf.folder.name)), read_only=True)


class ReadAudit:
    """Writes `mailbox.read` entries for webmail reads of shared folders, each (session, message, part) once."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple, None] = OrderedDict()

    async def read(self, directory, session_id: str, account: Account, owner: str, folder: Folder, uid: int,
                   part: str = "") -> None:
        key = (session_id, folder.ref.partition, folder.ref.id, uid, part)
        if key in self._seen:
            self._seen.move_to_end(key)
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        target = f"{owner}/{folder.name.split(DELIMITER, 2)[2]}"
        detail = {"protocol": "webmail", "uids": [uid], "messages": 1}
        if part:
            detail["attachment"] = part
        await directory.audit_soon(account.address, "mailbox.read", target, **detail)


def readable(shared: list[acl.SharedFolder]) -> list[Folder]:
    """The folders of acl.shared_with that may be read (right r), named and marked as `folder` returns them."""
    return [_as_shared(sf) for sf in shared if "r" in sf.rights]
