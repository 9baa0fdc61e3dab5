"""Accounts stay apart across DELETE, re-CREATE, RENAME and revoked shares (issue 7: 1, 2, 9), on SQLite and PostgreSQL."""

from __future__ import annotations

import imaplib
import re

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from .harness import PASSWORD, ImapServer, Raw, message

SECRET = message("SECRET", "SECRET figures of alice", sender="alice@city.test")
BOBS = message("bob's own", "bob's own mail", sender="bob@city.test", to="bob@city.test")


@pytest.fixture
def srv(storage_url, tmp_path):
    """The server on each back-end (the id and UIDVALIDITY rules are the database's)."""
    s = ImapServer(tmp_path, storage_url=storage_url).start()
    yield s
    s.stop()


def _login(srv, user: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
    c.login(f"{user}@city.test", PASSWORD)
    return c


def _uidvalidity(c: imaplib.IMAP4) -> int:
    return int(c.response("UIDVALIDITY")[1][0])


def _selected_elsewhere(srv, alice: imaplib.IMAP4, name: str, raw: bytes) -> Raw:
    """Create ``name`` with one message, and a second session of alice's with it selected."""
    assert alice.create(name)[0] == "OK"
    assert alice.append(name, None, None, raw)[0] == "OK"
    other = Raw(srv.port, login="alice@city.test")
    assert other.cmd(b"s SELECT " + name.encode())[1].startswith(b"s OK")
    return other


def test_a_folder_created_after_a_delete_shows_nothing_of_the_deleted_one(srv):
    """Issue 7 (1): bob's new folder took the id of alice's deleted one, and SELECT served her cached message list."""
    alice, bob = _login(srv, "alice"), _login(srv, "bob")
    assert alice.create("Secret")[0] == "OK"
    assert alice.append("Secret", None, None, SECRET)[0] == "OK"
    assert alice.select("Secret") == ("OK", [b"1"])  # the message list is now in the server's cache
    assert alice.fetch("1", "(BODY.PEEK[])")[1][0][1] == SECRET
    alice.close()
    assert alice.delete("Secret")[0] == "OK"
    assert bob.create("Fresh")[0] == "OK"
    assert bob.select("Fresh") == ("OK", [b"0"])
    assert bob.fetch("1:*", "(BODY.PEEK[])")[1] == [None]
    assert bob.append("Fresh", None, None, BOBS)[0] == "OK"
    assert bob.noop()[0] == "OK"
    typ, data = bob.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK" and [d[1] for d in data if isinstance(d, tuple)] == [BOBS]
    assert bob.search(None, "BODY", "SECRET") == ("OK", [b""])
    for c in (alice, bob):
        c.logout()


def test_a_session_on_a_deleted_folder_cannot_touch_the_folder_that_follows(srv):
    """Issue 7 (1): alice's other session, still on the deleted folder, expunged bob's message in his new one."""
    alice, bob = _login(srv, "alice"), _login(srv, "bob")
    stale = _selected_elsewhere(srv, alice, "Old", SECRET)
    assert alice.delete("Old")[0] == "OK"
    bob.create("New")
    bob.append("New", None, None, BOBS)
    stale.send(b"t UID STORE 1 +FLAGS (\\Deleted)\r\nu EXPUNGE\r\n")
    # RFC 3501 §7.1.5 / as Dovecot: the session cannot go on; nothing was applied anywhere.
    assert stale.line() == b"* BYE Selected mailbox was deleted, have to disconnect\r\n"
    assert stale.line() == b""
    stale.close()
    assert bob.select("New") == ("OK", [b"1"])
    typ, data = bob.fetch("1", "(FLAGS BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == BOBS and b"\\Deleted" not in data[0][0]
    for c in (alice, bob):
        c.logout()


def test_a_session_on_a_folder_deleted_and_recreated_under_its_name_is_ended(srv):
    alice = _login(srv, "alice")
    stale = _selected_elsewhere(srv, alice, "Box", message("first"))
    alice.delete("Box")
    alice.create("Box")
    alice.append("Box", None, None, message("second"))
    stale.send(b"f FETCH 1 (BODY.PEEK[])\r\n")
    assert stale.line() == b"* BYE Selected mailbox was deleted, have to disconnect\r\n"
    stale.close()
    assert alice.select("Box") == ("OK", [b"1"])
    assert b"second" in alice.fetch("1", "(BODY.PEEK[])")[1][0][1]
    alice.logout()


def test_uidvalidity_of_a_recreated_or_renamed_onto_mailbox_is_greater(srv):
    """RFC 3501 §2.3.1.1 / issue 7 (2): DELETE and CREATE within one second kept the old UIDVALIDITY."""
    c = _login(srv, "alice")
    seen = []
    for _ in range(4):
        c.create("Again")
        c.select("Again")
        seen.append(_uidvalidity(c))
        c.close()
        c.delete("Again")
    assert seen == sorted(set(seen))
    c.create("Elsewhere")
    c.rename("Elsewhere", "Again")  # RENAME onto a name used before
    c.select("Again")
    assert _uidvalidity(c) > seen[-1]
    typ, data = c.status("Again", "(UIDVALIDITY)")
    assert int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1)) > seen[-1]
    c.logout()


def test_a_renamed_folder_ends_other_sessions_on_it_and_the_renaming_one_goes_on(srv):
    alice = _login(srv, "alice")
    other = _selected_elsewhere(srv, alice, "Before", message("kept"))
    mine = Raw(srv.port, login="alice@city.test")
    mine.cmd(b"s SELECT Before")
    assert mine.cmd(b"r RENAME Before After")[1].startswith(b"r OK")
    untagged, tagged = mine.cmd(b"f UID FETCH 1 (FLAGS)")
    assert tagged.startswith(b"f OK") and untagged == [b"* 1 FETCH (UID 1 FLAGS ())\r\n"]  # \Recent went to `other`
    other.send(b"f FETCH 1 (FLAGS)\r\n")
    assert other.line().startswith(b"* BYE")
    for c in (other, mine):
        c.close()
    alice.logout()


# --- RFC 4314: a revoked share reaches open sessions (issue 7, 9) ---------------------------------------------


def _share(srv, rights: str) -> tuple[IMAPClient, IMAPClient]:
    owner = IMAPClient("127.0.0.1", port=srv.port, ssl=False)
    owner.login("bob@city.test", PASSWORD)
    owner.create_folder("Docs")
    owner.append("Docs", message("shared one", "first shared body", sender="bob@city.test"))
    reader = IMAPClient("127.0.0.1", port=srv.port, ssl=False)
    reader.login("alice@city.test", PASSWORD)
    if rights:
        owner.setacl("Docs", "alice@city.test", rights)
        assert reader.select_folder("Shared/bob@city.test/Docs")[b"EXISTS"] == 1
        assert b"first shared body" in reader.fetch("1", ["BODY.PEEK[]"])[1][b"BODY[]"]
    return owner, reader


def _deleteacl(srv) -> None:
    """DELETEACL as the owner (RFC 4314 §3.2; IMAPClient has no call for it)."""
    c = Raw(srv.port, login="bob@city.test")
    assert c.cmd(b"d DELETEACL Docs alice@city.test")[1].startswith(b"d OK")
    c.close()


@pytest.mark.slow
@pytest.mark.parametrize("revoke", ["deleteacl", "setacl-r"])
def test_revoking_a_share_stops_an_open_session_reading_old_and_new_mail(srv, revoke):
    owner, reader = _share(srv, "lrs")
    if revoke == "deleteacl":
        _deleteacl(srv)
    else:
        owner.setacl("Docs", "alice@city.test", "-r")  # "l" kept: the folder stays visible, unreadable
    owner.append("Docs", message("shared two", "second shared body", sender="bob@city.test"))
    for attempt in (lambda: reader.fetch("1", ["BODY.PEEK[]"]), lambda: reader.fetch("1:*", ["ENVELOPE"]),
                    lambda: reader.search("ALL"), lambda: reader.add_flags("1", [b"\\Seen"]),
                    lambda: reader.copy("1", "INBOX")):
        with pytest.raises(IMAPClientError, match="NOPERM"):
            attempt()
    assert reader.noop()[1] == []  # no news of the folder any more, new mail included
    with pytest.raises(IMAPClientError, match="NOPERM"):
        reader.fetch("2", ["BODY.PEEK[]"])
    assert reader.select_folder("INBOX")  # the session itself goes on
    owner.setacl("Docs", "alice@city.test", "lr")  # granted again: read again
    assert reader.select_folder("Shared/bob@city.test/Docs", readonly=True)[b"EXISTS"] == 2
    for c in (owner, reader):
        c.logout()


def test_revoked_while_idling_sends_no_more_updates(srv):
    owner, reader = _share(srv, "lrs")
    reader.idle()
    _deleteacl(srv)
    owner.append("Docs", message("after revoke", "not for alice", sender="bob@city.test"))
    # Whatever the server wrote while idling, up to the end of IDLE, is in done's answer.
    text, responses = reader.idle_done()
    assert not any(b"EXISTS" in repr(r).encode() for r in responses), responses
    with pytest.raises(IMAPClientError, match="NOPERM"):
        reader.fetch("1:*", ["BODY.PEEK[]"])
    for c in (owner, reader):
        c.logout()


def test_reduced_rights_apply_to_the_open_session(srv):
    """Rights narrowed from lrswte to lr: the next EXPUNGE and MOVE are refused, flags are not stored."""
    owner, reader = _share(srv, "lrswte")
    assert b"\\Deleted" in reader.add_flags("1", [b"\\Deleted"])[1]
    reader.remove_flags("1", [b"\\Deleted"])
    owner.setacl("Docs", "alice@city.test", "lr")
    assert b"\\Deleted" not in reader.add_flags("1", [b"\\Deleted"]).get(1, ())
    with pytest.raises(IMAPClientError, match="NOPERM"):
        reader.expunge()
    with pytest.raises(IMAPClientError, match="NOPERM|READ-ONLY"):
        reader.move("1", "INBOX")
    assert owner.select_folder("Docs")[b"EXISTS"] == 1
    assert b"\\Deleted" not in owner.get_flags("1")[1]
    for c in (owner, reader):
        c.logout()


def test_leaving_the_group_a_folder_is_shared_with_stops_an_open_session(srv):
    """Rights held through a group (RFC 4314 §2) end with the membership, at the next command."""
    d = srv.mb.directory
    srv.run(d.add_group("team@city.test"))
    srv.run(d.set_group_members("team@city.test", add=["alice@city.test"]))
    owner, reader = _share(srv, "")
    owner.setacl("Docs", "team@city.test", "lr")
    assert reader.select_folder("Shared/bob@city.test/Docs", readonly=True)[b"EXISTS"] == 1
    assert reader.fetch("1", ["BODY.PEEK[]"])
    srv.run(d.set_group_members("team@city.test", remove=["alice@city.test"]))
    with pytest.raises(IMAPClientError, match="NOPERM"):
        reader.fetch("1", ["BODY.PEEK[]"])
    for c in (owner, reader):
        c.logout()
