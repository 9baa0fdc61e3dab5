"""Domain types that cross the store's seam: frozen dataclasses, never ORM rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


class Role(str, enum.Enum):
    USER = "user"
    DEPARTMENT_ADMIN = "department_admin"
    ADMIN = "admin"


class Flag(enum.IntFlag):
    """IMAP system flags (RFC 3501 §2.3.2) stored as a bit set; \\Recent is per session, not stored."""

    SEEN = 1
    ANSWERED = 2
    FLAGGED = 4
    DELETED = 8
    DRAFT = 16


FLAG_NAMES: dict[str, Flag] = {
    "\\Seen": Flag.SEEN,
    "\\Answered": Flag.ANSWERED,
    "\\Flagged": Flag.FLAGGED,
    "\\Deleted": Flag.DELETED,
    "\\Draft": Flag.DRAFT,
}
_FLAG_BY_LOWER = {k.lower(): v for k, v in FLAG_NAMES.items()}


def split_flags(names: list[str] | tuple[str, ...]) -> tuple[int, frozenset[str]]:
    """Split IMAP flag names into the system-flag bit set and the keyword set."""
    bits = 0
    keywords = set()
    for name in names:
        f = _FLAG_BY_LOWER.get(name.lower())
        if f is not None:
            bits |= f
        elif name.startswith("\\"):
            continue  # \Recent and unknown system flags cannot be stored (RFC 3501 §6.4.6)
        else:
            keywords.add(name)
    return bits, frozenset(keywords)


def flag_names(bits: int, keywords: frozenset[str] | tuple[str, ...] = ()) -> list[str]:
    out = [name for name, f in FLAG_NAMES.items() if bits & f]
    out.extend(sorted(keywords))
    return out


SPECIAL_USE_FOLDERS = (
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


@dataclass(frozen=True)
class Domain:
    id: int
    name: str


@dataclass(frozen=True)
class Department:
    id: int
    code: str
    name: str
    parent_id: int | None
    kind: str
    leader: str | None = None  # the address of the leader who approves its held mail (issue 13)


@dataclass(frozen=True)
class Account:
    id: int
    address: str
    display_name: str
    department_id: int | None
    department_code: str | None
    role: Role
    quota_bytes: int
    quota_messages: int
    enabled: bool


@dataclass(frozen=True)
class Credential:
    """Which secret a login matched, and the stored hash it matched: a new hash means a new secret."""

    account_id: int
    address: str
    app_id: int | None  # None: the account's own password
    hash: str = field(repr=False)


@dataclass(frozen=True)
class Verified:
    account: Account
    credential: Credential


@dataclass(frozen=True)
class Group:
    id: int
    address: str
    name: str
    post_policy: str
    members: tuple[str, ...] = ()
    posters: tuple[str, ...] = ()


@dataclass(frozen=True)
class FolderRef:
    """Where a folder lives: the partition that holds it and its id there (never reused).

    ``generation`` (the UIDVALIDITY it had) and ``owner`` (its account id) are checked by the
    store on use when set (mailboxes.identity); 0 means "not known". They are not part of the
    key: a ref from a change event and one from a folder row name the same folder.
    """

    partition: str
    id: int
    generation: int = field(default=0, compare=False)
    owner: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Folder:
    ref: FolderRef
    account_id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    read_only: bool = False  # archive folders are read-only for clients

    @property
    def id(self) -> int:
        return self.ref.id


@dataclass(frozen=True)
class FolderStatus:
    folder: Folder
    messages: int
    unseen: int
    size: int
    deleted: int
    recent: int = 0  # messages no session has been told of as \Recent yet (STATUS RECENT)


class MessageMeta(NamedTuple):
    """One message's per-folder state: what FETCH FLAGS/UID/MODSEQ/RFC822.SIZE need.

    A NamedTuple, not a dataclass: a SELECT builds 10,000 of them, and tuples
    are built several times faster; it is just as immutable.
    """

    uid: int
    modseq: int
    flags: int
    keywords: frozenset[str]
    internal_date: datetime
    size: int
    blob_id: int

    def flag_names(self) -> list[str]:
        return flag_names(self.flags, self.keywords)


class FixedFacts(NamedTuple):
    """What never changes about a message in its folder once delivered: read on demand, cached without invalidation."""

    internal_date: datetime
    size: int
    blob_id: int


@dataclass(frozen=True)
class AppendResult:
    uidvalidity: int
    uid: int
    folder: FolderRef


@dataclass(frozen=True)
class Changes:
    """What changed in a folder since a MODSEQ (RFC 7162)."""

    highestmodseq: int
    changed: list[MessageMeta] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Quota:
    used_bytes: int
    used_messages: int
    limit_bytes: int
    limit_messages: int
