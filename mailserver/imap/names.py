"""Mailbox names as clients see them: personal folders, other users' shared folders under ``Shared/<owner>/``, LIST patterns.

Implementation notes
- RFC 2342 namespaces: personal ``""``, other users ``Shared/`` (delimiter ``/``). A folder
  ``Incoming`` of docs@city.test shared with the session's account is ``Shared/docs@city.test/Incoming``.
- Rights (RFC 4314) travel with the resolved Mailbox; the owner holds them all, year-archive
  folders are read-only (``lr``).
- LIST matching follows RFC 3501 §6.3.8 (in linear time, :mod:`.wildcard`): ``*`` matches everything, ``%`` stops at the
  delimiter; levels that exist only as parents are listed ``\\Noselect`` (``\\NonExistent`` in
  extended LIST, RFC 5258 §3.4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from mailboxes import acl
from mailboxes.errors import NotFound
from mailboxes.model import Account, Folder
from mailboxes.partitions import ARCHIVE_PREFIX
from mailboxes.store import Store

from .wildcard import Pattern, compile_pattern

DELIMITER = "/"
MAX_LIST_PATTERNS = 64  # distinct patterns in one extended LIST (RFC 5258 §3)
SHARED = acl.SHARED  # RFC 2342 §5 other users' namespace prefix (without the delimiter)
READ_ONLY_RIGHTS = "lr"


@dataclass(frozen=True)
class Mailbox:
    """A resolved, visible mailbox: its client name, the folder, whose it is and what the session may do."""

    name: str
    folder: Folder
    owner: Account
    rights: str

    @property
    def writable(self) -> bool:
        """READ-WRITE when any right changes state (RFC 4314 §4, SELECT)."""
        return any(r in self.rights for r in "swte")

    def may(self, right: str) -> bool:
        return right in self.rights


def _own_rights(folder: Folder) -> str:
    if folder.read_only or folder.ref.partition.startswith(ARCHIVE_PREFIX):
        return READ_ONLY_RIGHTS
    return acl.ALL_RIGHTS


split_shared = acl.split_shared  # (owner address, folder name) for ``Shared/<owner>/<folder>``, else None


async def resolve(store: Store, account: Account, name: str) -> Mailbox:
    """The mailbox a client names; NotFound when it does not exist or is not visible to the account."""
    shared = split_shared(name)
    if shared is not None:
        owner, folder_name = shared
        sf = await acl.shared_folder(store, account, owner, folder_name)
        return Mailbox(name, sf.folder, sf.owner, sf.rights)
    folder = await store.folder(account, name)
    return Mailbox(folder.name, folder, account, _own_rights(folder))


async def refresh(store: Store, account: Account, mb: Mailbox) -> Mailbox:
    """``mb`` with the rights ``account`` holds on it now (rights are checked when used, not only at SELECT).

    NotFound when its folder was deleted, re-created or renamed since ``mb`` was resolved
    (the store compares the folder's generation). One indexed read for an own folder; for a
    shared one, the account's groups and then the folder with its ACL (acl.folder_rights).
    """
    if mb.owner.id == account.id:
        rights = _own_rights(await store.folder_by_ref(mb.folder.ref))
    else:
        _, rights = await acl.folder_rights(store, account, mb.folder.ref)
    return mb if rights == mb.rights else replace(mb, rights=rights)


@dataclass(frozen=True)
class Entry:
    """One row of the mailbox tree for LIST/LSUB; ``mailbox`` is None for a level that only has children."""

    name: str
    mailbox: Mailbox | None
    subscribed: bool
    has_children: bool = False
    # False for a name that is only subscribed (or a level above one) with no mailbox at or
    # below it: plain LIST leaves it out, LIST (SUBSCRIBED) shows it \NonExistent, LSUB shows it.
    listed: bool = True


def ancestors(names: Iterable[str]) -> set[str]:
    """Every level strictly above the given names (``a`` and ``a/b`` for ``a/b/c``)."""
    out: set[str] = set()
    for name in names:
        while DELIMITER in name:
            name = name.rsplit(DELIMITER, 1)[0]
            if name in out:
                break
            out.add(name)
    return out


async def tree(store: Store, account: Account) -> list[Entry]:
    """Every visible mailbox and subscribed name, with the levels above them, sorted by name.

    Subscriptions are names (RFC 3501 §6.3.6): one may outlive its folder, or name a folder
    shared with the account (``Shared/<owner>/...``), which is subscribed only when asked.
    """
    boxes: list[Mailbox] = [Mailbox(f.name, f, account, _own_rights(f)) for f in await store.folders(account)]
    subscribed = set(await store.subscriptions(account))
    for sf in await acl.shared_with(store, account):
        name = DELIMITER.join((SHARED, sf.owner.address, sf.folder.name))
        boxes.append(Mailbox(name, sf.folder, sf.owner, sf.rights))
    by_name: dict[str, Mailbox | None] = {b.name: b for b in boxes}
    listed = set(by_name) | ancestors(by_name)
    for n in listed | subscribed | ancestors(subscribed):
        by_name.setdefault(n, None)
    parents = ancestors(listed)
    return [Entry(n, by_name[n], n in subscribed, n in parents, n in listed)
            for n in sorted(by_name, key=_sort_key)]


def _sort_key(name: str) -> tuple[int, str]:
    return (0 if name == "INBOX" or name.startswith("INBOX/") else 1, name)


def list_pattern(reference: str, pattern: str) -> Pattern:
    """RFC 3501 §6.3.8: the reference and the pattern together; ``*`` any, ``%`` any but the delimiter."""
    full = pattern if pattern.startswith(DELIMITER) or not reference else reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in (DELIMITER, "*", "%")):
        full = "INBOX" + full[5:]  # RFC 3501 §5.1: INBOX is case-insensitive
    return compile_pattern(full, DELIMITER)  # linear time: no regex backtracking on client input


def matches(patterns: list[Pattern], name: str) -> bool:
    return any(p.fullmatch(name) for p in patterns)


def attributes(entry: Entry, *, extended: bool = False, subscribed_attr: bool = False) -> tuple[str, ...]:
    """LIST attributes: \\Noselect, CHILDREN (RFC 3348), SPECIAL-USE (RFC 6154), \\Subscribed (RFC 5258)."""
    out: list[str] = []
    if entry.mailbox is None:
        out.append("\\NonExistent" if extended else "\\Noselect")
    if entry.listed:  # a name that is only subscribed is \\NonExistent alone (RFC 5258 §5 example)
        out.append("\\HasChildren" if entry.has_children else "\\HasNoChildren")
    if entry.mailbox is not None and entry.mailbox.owner.id == entry.mailbox.folder.account_id:
        use = entry.mailbox.folder.special_use
        if use and entry.mailbox.name == entry.mailbox.folder.name:
            out.append(use)
    if subscribed_attr and entry.subscribed:
        out.append("\\Subscribed")
    return tuple(out)


def is_other_users(name: str) -> bool:
    return name == SHARED or name.startswith(SHARED + DELIMITER)


__all__ = [
    "DELIMITER",
    "MAX_LIST_PATTERNS",
    "SHARED",
    "Entry",
    "Mailbox",
    "NotFound",
    "attributes",
    "is_other_users",
    "matches",
    "list_pattern",
    "refresh",
    "resolve",
    "split_shared",
    "tree",
]
