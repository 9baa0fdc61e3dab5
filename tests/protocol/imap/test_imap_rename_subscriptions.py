"""RENAME of a subscribed folder tree takes the subscriptions along (as Dovecot), with imaplib and imapclient, on each back-end."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

from .harness import PASSWORD, ImapServer


@pytest.fixture
def srv(storage_url, tmp_path):
    s = ImapServer(tmp_path, storage_url=storage_url).start()
    yield s
    s.stop()


def _ok(c: imaplib.IMAP4, *args: str) -> None:
    typ, data = getattr(c, args[0])(*args[1:])
    assert typ == "OK", (args, data)


def _names(lines: list) -> list[str]:
    return [line.decode().rsplit('"/" ', 1)[1] for line in lines if line]


def _list_subscribed(c: imaplib.IMAP4, pattern: str) -> list[bytes]:
    """RFC 5258 §3.1 LIST (SUBSCRIBED): imaplib has no method for the selection options."""
    typ, data = c._simple_command("LIST", "(SUBSCRIBED)", '""', f'"{pattern}"')
    assert typ == "OK", data
    return [x for x in c._untagged_response(typ, data, "LIST")[1] if x]


def test_rename_of_a_tree_moves_the_subscriptions_of_the_folder_and_every_child(srv):
    c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
    c.login("alice@city.test", PASSWORD)
    try:
        for name in ("Old/Sub/Deep", "Old_x", "Oldies", "Old/Ghost", "New/Sub"):
            _ok(c, "create", name)
        for name in ("Old", "Old/Sub/Deep", "Old_x", "Oldies", "Old/Ghost", "New/Sub"):
            _ok(c, "subscribe", name)
        # Two names no folder has by the time of the RENAME: Old/Ghost (under the renamed tree)
        # and New/Sub (where the tree is going). Old/Sub is a folder nobody subscribed.
        _ok(c, "delete", "Old/Ghost")
        _ok(c, "delete", "New/Sub")
        _ok(c, "delete", "New")
        _ok(c, "rename", "Old", "New")
        typ, lsub = c.lsub('""', "*")
        assert typ == "OK"
        subscribed = _names(lsub)
        # The folder and its subscribed child moved; the unsubscribed child stays unsubscribed;
        # the look-alike siblings (LIKE's "_" and a shared prefix) and the ghost stay as they were;
        # New/Sub was subscribed already and is listed once.
        for gone in ("Old", "Old/Sub/Deep"):
            assert gone not in subscribed, subscribed
        assert [n for n in subscribed if n.startswith(("Old", "New"))] == [
            "New", "New/Sub", "New/Sub/Deep", "Old/Ghost", "Old_x", "Oldies"]
        assert _list_subscribed(c, "New*") == [
            b'(\\HasChildren \\Subscribed) "/" New', b'(\\HasChildren \\Subscribed) "/" New/Sub',
            b'(\\HasNoChildren \\Subscribed) "/" New/Sub/Deep']
        # RFC 5258 §3.1: a subscription to a name that does not exist is \NonExistent, and stayed put.
        assert _list_subscribed(c, "Old*") == [
            b'(\\NonExistent \\Subscribed) "/" Old/Ghost', b'(\\HasNoChildren \\Subscribed) "/" Old_x',
            b'(\\HasNoChildren \\Subscribed) "/" Oldies']
        # INBOX is special (RFC 3501 §6.3.5): it stays, so does its subscription; the new folder is not subscribed.
        _ok(c, "rename", "INBOX", "Before")
        assert [n for n in _names(c.lsub('""', "*")[1]) if n in ("INBOX", "Before")] == ["INBOX"]
    finally:
        c.logout()


def test_imapclient_sees_subscriptions_and_acls_follow_a_renamed_subtree(srv):
    with IMAPClient("127.0.0.1", port=srv.port, ssl=False, timeout=30) as c:
        c.login("alice@city.test", PASSWORD)
        c.create_folder("Team/Plans")
        c.subscribe_folder("Team/Plans")
        c.setacl("Team/Plans", "bob@city.test", "lrs")  # RFC 4314 §3.1
        c.rename_folder("Team", "Archive/Team")
        subscribed = [name for _, _, name in c.list_sub_folders("", "*")]
        assert "Archive/Team/Plans" in subscribed and "Team/Plans" not in subscribed
        assert "Team" not in subscribed and "Archive/Team" not in subscribed  # Team itself was never subscribed
        # ACLs belong to the folder (mailboxes/acl.py keys them by folder id): they went along.
        assert (b"bob@city.test", b"lrs") in c.getacl("Archive/Team/Plans")
        c.rename_folder("Archive/Team/Plans", "Plans")  # a child on its own: its subscription moves too
        subscribed = [name for _, _, name in c.list_sub_folders("", "*")]
        assert "Plans" in subscribed and "Archive/Team/Plans" not in subscribed
    with IMAPClient("127.0.0.1", port=srv.port, ssl=False, timeout=30) as bob:
        bob.login("bob@city.test", PASSWORD)
        assert bob.folder_exists("Shared/alice@city.test/Plans")
        assert not bob.folder_exists("Shared/alice@city.test/Archive/Team/Plans")
