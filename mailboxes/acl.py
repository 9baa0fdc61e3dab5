"""Folder access control lists (RFC 4314 rights) and the folders other accounts share with an account.

Implementation notes
- Identifiers are account addresses, group addresses (every member holds the rights) or
  ``anyone``; they are stored lowercased in ``folder_acl`` beside the folder, in its partition.
- The owner of a folder always holds every right; its entry cannot be changed (RFC 4314 §2
  lets a server refuse this), so an owner can never lock themselves out.
- Rights are kept in the canonical order of ``ALL_RIGHTS``; the obsolete ``c`` and ``d``
  (RFC 2086) are accepted and mapped as RFC 4314 §2.1.1 says (``c`` → ``k``, ``d`` → ``xte``).
- Nothing here is cached: a right removed is gone at the next command. A change of a
  folder's entries is announced on the change bus (kind "acl"), so open sessions look
  their rights up again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, select, update

from . import identity
from . import schema as t
from .changes import FolderChanged
from .addresses import normalise_address
from .errors import InvalidInput, NotFound
from .model import Account, Folder, FolderRef
from .partitions import DEPARTMENT_PREFIX, MAIN
from .store import Store, _folder

ALL_RIGHTS = "lrswipkxtea"  # RFC 4314 §2.1 (no "n": we keep no shared annotations)
ANYONE = "anyone"
_OBSOLETE = {"c": "k", "d": "xte"}  # RFC 4314 §2.1.1
MAX_IDENTIFIER = 320


@dataclass(frozen=True)
class SharedFolder:
    """A folder of another account that ``account`` may at least see (right ``l``)."""

    owner: Account
    folder: Folder
    rights: str


def normalise_rights(rights: str) -> str:
    """Validate a rights string and return it in canonical order; raise InvalidInput on an unknown letter."""
    out = set()
    for ch in rights:
        if ch in _OBSOLETE:
            out.update(_OBSOLETE[ch])
        elif ch in ALL_RIGHTS:
            out.add(ch)
        else:
            raise InvalidInput(f"unknown right {ch!r}")
    return "".join(r for r in ALL_RIGHTS if r in out)


async def normalise_identifier(store: Store, identifier: str) -> str:
    """``anyone``, or the address of an existing account or group (RFC 4314 §3.1 identifier)."""
    ident = identifier.strip()
    if ident.lower() == ANYONE:
        return ANYONE
    if not ident or len(ident) > MAX_IDENTIFIER:
        raise InvalidInput("invalid identifier")
    address = normalise_address(ident)
    async with store.router.central.read() as conn:
        for table in (t.accounts, t.groups):
            if (await conn.execute(select(table.c.id).where(table.c.address == address))).first():
                return address
    raise NotFound(f"no account or group {address}")


async def get_acl(store: Store, folder: Folder) -> list[tuple[str, str]]:
    """The folder's entries as (identifier, rights), the owner first (RFC 4314 §3.3)."""
    owner = await store.directory.account_by_id(folder.account_id)
    db = await store.router.database(folder.ref.partition)
    async with db.read() as conn:
        rows = (await conn.execute(select(t.folder_acl.c.identifier, t.folder_acl.c.rights)
                                   .where(t.folder_acl.c.folder_id == folder.id)
                                   .order_by(t.folder_acl.c.identifier))).all()
    return [(owner.address, ALL_RIGHTS)] + [(r.identifier, r.rights) for r in rows if r.identifier != owner.address]


async def set_rights(store: Store, folder: Folder, identifier: str, rights: str, mode: str = "replace") -> str:
    """SETACL (RFC 4314 §3.1): replace, add to or remove from an identifier's rights; returns the new rights.

    Empty resulting rights delete the entry (RFC 4314 §3.1).
    """
    if mode not in ("replace", "add", "remove"):
        raise InvalidInput("bad rights mode")
    ident = await normalise_identifier(store, identifier)
    wanted = normalise_rights(rights)
    await _refuse_owner(store, folder, ident)
    db = await store.router.database(folder.ref.partition)
    async with db.write() as conn:
        if (await conn.execute(select(t.folders.c.id).where(t.folders.c.id == folder.id))).first() is None:
            raise NotFound("folder no longer exists")
        where = and_(t.folder_acl.c.folder_id == folder.id, t.folder_acl.c.identifier == ident)
        row = (await conn.execute(select(t.folder_acl.c.rights).where(where))).first()
        current = set(row.rights) if row else set()
        if mode == "add":
            current |= set(wanted)
        elif mode == "remove":
            current -= set(wanted)
        else:
            current = set(wanted)
        new = "".join(r for r in ALL_RIGHTS if r in current)
        if not new:
            await conn.execute(delete(t.folder_acl).where(where))
        elif row is None:
            await conn.execute(insert(t.folder_acl).values(folder_id=folder.id, identifier=ident, rights=new))
        else:
            await conn.execute(update(t.folder_acl).where(where).values(rights=new))
        ev = await store._announce(conn, FolderChanged(folder.ref, 0, "acl"))
    store.bus.publish(folder.ref, ev)  # commit first, then broadcast
    return new


async def delete_rights(store: Store, folder: Folder, identifier: str) -> None:
    """DELETEACL (RFC 4314 §3.2)."""
    ident = identifier.strip().lower() if identifier.strip().lower() == ANYONE else normalise_address(identifier)
    await _refuse_owner(store, folder, ident)
    db = await store.router.database(folder.ref.partition)
    async with db.write() as conn:
        await conn.execute(delete(t.folder_acl).where(and_(t.folder_acl.c.folder_id == folder.id,
                                                           t.folder_acl.c.identifier == ident)))
        ev = await store._announce(conn, FolderChanged(folder.ref, 0, "acl"))
    store.bus.publish(folder.ref, ev)


async def _refuse_owner(store: Store, folder: Folder, ident: str) -> None:
    owner = await store.directory.account_by_id(folder.account_id)
    if ident == owner.address:
        raise InvalidInput("the owner's rights cannot be changed")


async def _identifiers(store: Store, account: Account) -> list[str]:
    """Who ``account`` is for ACL purposes: itself, ``anyone``, and every group it belongs to."""
    async with store.router.central.read() as conn:
        groups = (await conn.execute(select(t.groups.c.address).select_from(
            t.groups.join(t.group_members, t.group_members.c.group_id == t.groups.c.id))
            .where(t.group_members.c.address == account.address))).scalars().all()
    return [account.address, ANYONE, *groups]


async def rights_for(store: Store, account: Account, folder: Folder) -> str:
    """MYRIGHTS (RFC 4314 §3.5): every right for the owner, else the union of the matching entries."""
    if folder.account_id == account.id:
        return ALL_RIGHTS
    idents = await _identifiers(store, account)
    db = await store.router.database(folder.ref.partition)
    async with db.read() as conn:
        rows = (await conn.execute(select(t.folder_acl.c.rights).where(and_(
            t.folder_acl.c.folder_id == folder.id, t.folder_acl.c.identifier.in_(idents))))).scalars().all()
    have = set("".join(rows))
    return "".join(r for r in ALL_RIGHTS if r in have)


async def folder_rights(store: Store, account: Account, ref: FolderRef) -> tuple[Folder, str]:
    """The folder ``ref`` names and ``account``'s rights on it now, in one read of its partition.

    NotFound when the folder was deleted, re-created or renamed since ``ref`` was made
    (mailboxes.identity). What an open session asks before each command on a shared folder.
    """
    idents = await _identifiers(store, account)
    db = await store.router.database(ref.partition)
    acl_c = t.folder_acl.c
    async with db.read() as conn:
        rows = (await conn.execute(select(t.folders, acl_c.rights).select_from(t.folders.outerjoin(
            t.folder_acl, and_(acl_c.folder_id == t.folders.c.id, acl_c.identifier.in_(idents))))
            .where(t.folders.c.id == ref.id))).all()
    identity.check(ref, rows[0] if rows else None)
    folder = _folder(ref.partition, rows[0])
    if folder.account_id == account.id:
        return folder, ALL_RIGHTS
    have = set("".join(r.rights or "" for r in rows))
    return folder, "".join(r for r in ALL_RIGHTS if r in have)


def _partitions(store: Store) -> list[str]:
    """Every partition that may hold account folders: main and the configured department databases."""
    names = [MAIN]
    if store.router.department_mode:
        names += [DEPARTMENT_PREFIX + code for code in store.router.config.departments]
    return names


async def shared_with(store: Store, account: Account) -> list[SharedFolder]:
    """Other accounts' folders that ``account`` may see (right ``l``), by owner address then folder name."""
    idents = await _identifiers(store, account)
    found: dict[tuple[str, int], tuple[object, set[str]]] = {}
    for part in _partitions(store):
        db = await store.router.database(part)
        async with db.read() as conn:
            rows = (await conn.execute(select(t.folders, t.folder_acl.c.rights).select_from(
                t.folder_acl.join(t.folders, t.folders.c.id == t.folder_acl.c.folder_id)).where(and_(
                    t.folder_acl.c.identifier.in_(idents), t.folders.c.account_id != account.id)))).all()
        for r in rows:
            key = (part, r.id)
            entry = found.setdefault(key, (r, set()))
            entry[1].update(r.rights)
    owners: dict[int, Account] = {}
    out = []
    for (part, _fid), (row, rights) in found.items():
        if "l" not in rights:
            continue
        owner_id = row.account_id  # type: ignore[attr-defined]
        if owner_id not in owners:
            try:
                owners[owner_id] = await store.directory.account_by_id(owner_id)
            except NotFound:
                continue
        out.append(SharedFolder(owners[owner_id], _folder(part, row),
                                "".join(r for r in ALL_RIGHTS if r in rights)))
    out.sort(key=lambda s: (s.owner.address, s.folder.name))
    return out


SHARED = "Shared"  # RFC 2342 §5 other users' namespace prefix (without the delimiter), as IMAP and the webmail name it


def split_shared(name: str) -> tuple[str, str] | None:
    """(owner address, folder name) for ``Shared/<owner>/<folder>``, else None."""
    parts = name.split("/", 2)
    if len(parts) == 3 and parts[0] == SHARED and "@" in parts[1] and parts[2]:
        return parts[1], parts[2]
    return None


async def shared_folder(store: Store, account: Account, owner_address: str, name: str) -> SharedFolder:
    """One folder of ``owner_address`` as seen by ``account``; NotFound unless it has right ``l`` (RFC 4314 §4)."""
    try:
        owner = await store.directory.account(owner_address)
        folder = await store.folder(owner, name)
    except (NotFound, InvalidInput):
        raise NotFound(f"no folder {name}") from None
    rights = await rights_for(store, account, folder)
    if "l" not in rights:
        raise NotFound(f"no folder {name}")  # do not reveal that it exists
    return SharedFolder(owner, folder, rights)
