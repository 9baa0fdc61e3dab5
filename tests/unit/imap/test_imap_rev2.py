"""IMAP4rev2 (RFC 9051) in the selected-mailbox view and in ENABLE's parsing: no RECENT once rev2 is on."""

from __future__ import annotations

from datetime import UTC, datetime

from mailboxes.model import Changes, MessageMeta
from mailserver.imap.cmd_any import ENABLEABLE
from mailserver.imap.command_syntax import parse_command
from mailserver.imap.selected import SelectedMailbox, flags_bytes
from mailserver.imap.session import BASE_CAPS

_WHEN = datetime(2026, 11, 2, tzinfo=UTC)


def _meta(uid: int, modseq: int = 1, flags: int = 0) -> MessageMeta:
    return MessageMeta(uid, modseq, flags, frozenset(), _WHEN, 100, uid)


def _view() -> SelectedMailbox:
    return SelectedMailbox([_meta(1), _meta(2)], modseq=2, uidvalidity=7, uidnext=3, read_only=False)


def test_new_mail_for_a_rev1_session_says_exists_and_recent():
    view = _view()
    lines = view.apply(Changes(5, [_meta(3, 5)]), allow_expunge=True, condstore=False, qresync=False,
                       claim_recent=lambda uids: set(uids))
    assert lines == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert view.flags_of(2) == b"(\\Recent)"


def test_new_mail_for_a_rev2_session_says_exists_only():
    view = _view()  # RFC 9051 Appendix E: no RECENT response, no \Recent flag
    lines = view.apply(Changes(5, [_meta(3, 5)]), allow_expunge=True, condstore=False, qresync=False,
                       claim_recent=None)
    assert lines == [b"* 3 EXISTS\r\n"]
    assert view.flags_of(2) == b"()" and view.exists == 3 and view.uidnext == 4


def test_flags_bytes_adds_recent_only_when_asked():
    assert flags_bytes(_meta(1, flags=1)) == b"(\\Seen)"
    assert flags_bytes(_meta(1, flags=1), recent=True) == b"(\\Seen \\Recent)"


def test_imap4rev2_is_advertised_beside_imap4rev1_and_enableable():
    assert BASE_CAPS[:2] == ("IMAP4rev1", "IMAP4rev2")
    assert "IMAP4REV2" in ENABLEABLE
    tag, cmd = parse_command(b"e1 enable imap4rev2 CONDSTORE", {})
    assert tag == "e1" and cmd.capabilities == ("IMAP4REV2", "CONDSTORE")
