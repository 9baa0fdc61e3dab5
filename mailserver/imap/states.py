"""Session states as types (RFC 3501 §3) and the typed outcomes a command handler returns or raises.

A state carries exactly the data valid in it, so "selected without a mailbox" cannot be
written; handlers raise ``No`` / ``Bad`` (or a store error) and ``session.reply_for`` turns
them into the wire in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailboxes.changes import Listener
from mailboxes.model import Account

from .names import Mailbox
from .responses import Code
from .selected import SelectedMailbox


@dataclass
class NotAuthenticated:
    """RFC 3501 §3.1: before LOGIN / AUTHENTICATE."""


@dataclass
class Authenticated:
    """RFC 3501 §3.2: logged in, no mailbox selected."""

    account: Account


@dataclass
class Selected:
    """RFC 3501 §3.3: a mailbox is selected; ``view`` is what the client knows of it."""

    account: Account
    mailbox: Mailbox
    view: SelectedMailbox
    listener: Listener = field(repr=False)
    identity_seen: int = 0  # listener.identity_events when the folder and rights were last looked up
    shared_reads: set[int] = field(default_factory=set, repr=False)  # UIDs whose read of another's is audited

    @property
    def read_only(self) -> bool:
        return self.view.read_only


@dataclass
class LoggedOut:
    """RFC 3501 §3.4: LOGOUT answered (or the connection is ending)."""


State = NotAuthenticated | Authenticated | Selected | LoggedOut


@dataclass(frozen=True)
class Ok:
    """A handler's successful completion: ``tag OK [code] text``."""

    text: str
    code: Code | None = None


REPLIED = Ok("(already replied)")  # returned by a handler that wrote its own tagged reply (STARTTLS)


class No(Exception):
    """The command was understood but refused: ``tag NO [code] text`` (RFC 3501 §7.1.2)."""

    def __init__(self, text: str, code: Code | None = None) -> None:
        super().__init__(text)
        self.text, self.code = text, code


class Bad(Exception):
    """The command is invalid here or malformed: ``tag BAD [code] text`` (RFC 3501 §7.1.3)."""

    def __init__(self, text: str, code: Code | None = None) -> None:
        super().__init__(text)
        self.text, self.code = text, code


class SessionEnd(Exception):
    """Close the connection, after ``* BYE text`` when ``bye`` is set (RFC 3501 §7.1.5)."""

    def __init__(self, reason: str, bye: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.bye = reason, bye
