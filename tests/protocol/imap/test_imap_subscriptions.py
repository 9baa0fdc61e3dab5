"""Subscriptions as a list of names (RFC 3501 §6.3.6, §6.3.7, §6.3.9; RFC 5258 §3.1, §5), as raw transcripts and with imapclient."""

from __future__ import annotations

import contextlib

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from .harness import PASSWORD, Raw


@pytest.fixture
def raw(server):
    c = Raw(server.port, login="alice@city.test")
    yield c
    with contextlib.suppress(OSError):
        c.close()


def ok(c: Raw, command: bytes) -> list[bytes]:
    untagged, tagged = c.cmd(command)
    assert tagged.startswith(command.split(b" ", 1)[0] + b" OK"), tagged
    return untagged


def test_provisioned_folders_are_subscribed_but_create_subscribes_nothing(raw):
    assert ok(raw, b'a LSUB "" "*"') == [
        b'* LSUB () "/" INBOX\r\n', b'* LSUB () "/" Archive\r\n', b'* LSUB () "/" Drafts\r\n',
        b'* LSUB () "/" Junk\r\n', b'* LSUB () "/" Sent\r\n', b'* LSUB () "/" Trash\r\n']
    ok(raw, b"b CREATE Work/Reports")  # as Dovecot: the client subscribes if it wants to
    assert ok(raw, b'c LSUB "" "Work*"') == []
    assert ok(raw, b'd LIST "" "Work*"') == [b'* LIST (\\HasChildren) "/" Work\r\n',
                                             b'* LIST (\\HasNoChildren) "/" Work/Reports\r\n']


def test_subscribe_checks_the_name_unsubscribe_does_not(raw):
    # RFC 3501 §6.3.6: the server MAY validate; like Dovecot we do, with NO [NONEXISTENT].
    assert raw.cmd(b"a SUBSCRIBE Nowhere")[1] == b"a NO [NONEXISTENT] Mailbox does not exist\r\n"
    # Not subscribed: OK, as Dovecot answers (nothing to remove is not an error).
    assert raw.cmd(b"b UNSUBSCRIBE Nowhere")[1] == b"b OK UNSUBSCRIBE completed\r\n"
    assert raw.cmd(b"c SUBSCRIBE &Jjo-")[1].startswith(b"c NO [NONEXISTENT]")
    assert raw.cmd(b"d UNSUBSCRIBE &-x")[1].startswith(b"d OK")  # "&-x" is valid modified UTF-7 ("&x")
    assert raw.cmd(b"e UNSUBSCRIBE &x")[1].startswith(b"e NO [CANNOT]")  # not modified UTF-7: NO, not BAD


def test_names_are_case_sensitive_but_inbox(raw):
    ok(raw, b"a CREATE Projects")
    assert raw.cmd(b"b SUBSCRIBE projects")[1].startswith(b"b NO [NONEXISTENT]")
    ok(raw, b"c SUBSCRIBE inbox")  # RFC 3501 §5.1: INBOX in any case is INBOX
    ok(raw, b"d UNSUBSCRIBE Inbox")
    assert ok(raw, b'e LSUB "" "*"')[:1] == [b'* LSUB () "/" Archive\r\n']  # INBOX no longer first


def test_delete_keeps_the_subscription_and_unsubscribe_removes_it(raw):
    ok(raw, b"a CREATE Projects")
    ok(raw, b"b SUBSCRIBE Projects")
    ok(raw, b"c DELETE Projects")
    # RFC 3501 §6.3.6: the server MUST NOT unilaterally remove it, even though the folder is gone.
    assert ok(raw, b'd LSUB "" "*ject*"') == [b'* LSUB (\\Noselect) "/" Projects\r\n']
    # RFC 5258 §3.1, §5: LIST (SUBSCRIBED) returns it \NonExistent; plain LIST does not.
    assert ok(raw, b'e LIST (SUBSCRIBED) "" "*ject*"') == [b'* LIST (\\NonExistent \\Subscribed) "/" Projects\r\n']
    assert ok(raw, b'f LIST "" "*ject*"') == []
    assert ok(raw, b'g LIST "" "*ject*" RETURN (SUBSCRIBED)') == []
    ok(raw, b"h CREATE Projects")  # the name comes back: so does the subscription, still there
    assert ok(raw, b'i LIST (SUBSCRIBED) "" "*ject*"') == [b'* LIST (\\HasNoChildren \\Subscribed) "/" Projects\r\n']
    ok(raw, b"j DELETE Projects")
    ok(raw, b"k UNSUBSCRIBE Projects")  # RFC 9051 §6.3.8: a name whose mailbox is gone can be unsubscribed
    assert ok(raw, b'l LSUB "" "*ject*"') == [] and ok(raw, b'm LIST (SUBSCRIBED) "" "*ject*"') == []


def test_rename_moves_the_subscriptions_of_the_renamed_folders(raw):
    ok(raw, b"a CREATE Old/Sub")
    ok(raw, b"b SUBSCRIBE Old")
    ok(raw, b"c SUBSCRIBE Old/Sub")
    ok(raw, b"d RENAME Old New")
    # As Dovecot: the subscriptions go with the folders (RFC 3501 §6.3.6 only forbids removing
    # one unilaterally; the names are still subscribed, under the folders' new names).
    assert ok(raw, b'e LIST (SUBSCRIBED) "" "Old*"') == []
    assert ok(raw, b'f LSUB "" "New*"') == [b'* LSUB () "/" New\r\n', b'* LSUB () "/" New/Sub\r\n']


def test_lsub_percent_returns_an_unsubscribed_parent_noselect(raw):
    ok(raw, b"a CREATE foo/bar")
    ok(raw, b"b SUBSCRIBE foo/bar")
    # RFC 3501 §6.3.9: "foo/bar" subscribed, "foo" not: "%" must return foo, flagged \Noselect.
    untagged = ok(raw, b'c LSUB "" "%"')
    assert b'* LSUB (\\Noselect) "/" foo\r\n' in untagged and not [u for u in untagged if b"foo/bar" in u]
    assert ok(raw, b'd LSUB "" "foo*"') == [b'* LSUB () "/" foo/bar\r\n']  # "*" reaches foo/bar itself
    assert ok(raw, b'e LSUB "foo/" "%"') == [b'* LSUB () "/" foo/bar\r\n']
    ok(raw, b"f SUBSCRIBE foo")
    assert ok(raw, b'g LSUB "" "fo%"') == [b'* LSUB () "/" foo\r\n']
    # RFC 5258 §3.5: RECURSIVEMATCH names the parent of a subscribed child, CHILDINFO.
    ok(raw, b"h UNSUBSCRIBE foo")
    assert ok(raw, b'i LIST (SUBSCRIBED RECURSIVEMATCH) "" "fo%"') == [
        b'* LIST (\\HasChildren) "/" foo ("CHILDINFO" ("SUBSCRIBED"))\r\n']


def test_a_subscribed_name_below_nothing_that_exists(raw):
    ok(raw, b"a CREATE Deep/er/est")
    ok(raw, b"b SUBSCRIBE Deep/er/est")
    ok(raw, b"c DELETE Deep/er/est")
    ok(raw, b"d DELETE Deep/er")
    ok(raw, b"e DELETE Deep")
    assert ok(raw, b'f LIST "" "De*"') == []
    assert ok(raw, b'g LIST (SUBSCRIBED) "" "De*"') == [b'* LIST (\\NonExistent \\Subscribed) "/" Deep/er/est\r\n']
    assert ok(raw, b'h LIST (SUBSCRIBED RECURSIVEMATCH) "" "De%"') == [
        b'* LIST (\\NonExistent) "/" Deep ("CHILDINFO" ("SUBSCRIBED"))\r\n']
    assert ok(raw, b'i LSUB "" "De%"') == [b'* LSUB (\\Noselect) "/" Deep\r\n']


def test_shared_folders_are_subscribed_by_name(server, raw):
    server.run(server.add_account("docs"))
    owner = Raw(server.port, login="docs@city.test")
    ok(owner, b"a CREATE Circulars")
    ok(owner, b"b SETACL Circulars alice@city.test lr")
    assert ok(raw, b'a LSUB "" "Shared/*"') == []  # shared with alice: listed, not subscribed for her
    assert ok(raw, b'b LIST "" "Shared/*"')[-1] == b'* LIST (\\HasNoChildren) "/" Shared/docs@city.test/Circulars\r\n'
    ok(raw, b"c SUBSCRIBE Shared/docs@city.test/Circulars")
    assert ok(raw, b'd LSUB "" "Shared/*"') == [b'* LSUB () "/" Shared/docs@city.test/Circulars\r\n']
    ok(owner, b"c DELETEACL Circulars alice@city.test")  # no longer visible to alice: still subscribed
    assert ok(raw, b'e LIST (SUBSCRIBED) "" "Shared/*"') == [
        b'* LIST (\\NonExistent \\Subscribed) "/" Shared/docs@city.test/Circulars\r\n']
    ok(raw, b"f UNSUBSCRIBE Shared/docs@city.test/Circulars")
    assert ok(raw, b'g LIST (SUBSCRIBED) "" "Shared/*"') == []
    owner.close()


def test_imapclient_subscribe_list_sub_folders_unsubscribe(server):
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
    c.login("alice@city.test", PASSWORD)
    c.create_folder("Reports")
    assert "Reports" not in [n for _f, _d, n in c.list_sub_folders()]
    c.subscribe_folder("Reports")
    assert [f for f, _d, n in c.list_sub_folders() if n == "Reports"] == [()]
    c.delete_folder("Reports")
    assert [f for f, _d, n in c.list_sub_folders() if n == "Reports"] == [(b"\\Noselect",)]
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        c.subscribe_folder("Reports")  # RFC 3501 §6.3.6: validated, as Dovecot
    c.unsubscribe_folder("Reports")
    assert "Reports" not in [n for _f, _d, n in c.list_sub_folders()]
    c.logout()


def test_too_many_subscriptions_is_no_limit(server, raw, monkeypatch):
    from mailboxes import store

    monkeypatch.setattr(store, "MAX_SUBSCRIPTIONS", 7)  # the 6 provisioned folders and one more
    ok(raw, b"a CREATE One")
    ok(raw, b"b CREATE Two")
    ok(raw, b"c SUBSCRIBE One")
    assert raw.cmd(b"d SUBSCRIBE Two")[1] == b"d NO [LIMIT] Too many subscriptions\r\n"
    assert raw.cmd(b"e NOOP")[1].startswith(b"e OK")  # the session goes on
