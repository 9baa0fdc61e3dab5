"""RENAME of a folder tree (RFC 3501 §6.3.5): never into its own child; children, messages, ACLs and subscriptions go along."""

from __future__ import annotations

from .harness import Raw, message
from .test_imap_subscriptions import ok
from .test_imap_subscriptions import raw  # noqa: F401 - the fixture: raw logged in, a raw-bytes client


def tree(c: Raw, pattern: bytes = b"*") -> list[bytes]:
    return [line.rsplit(b'"/" ', 1)[1].rstrip(b"\r\n") for line in ok(c, b'L LIST "" "' + pattern + b'"')]


def test_a_folder_cannot_be_renamed_into_its_own_child(raw):
    ok(raw, b"a CREATE Done/Sub")
    ok(raw, b"b CREATE Donegal")
    before = tree(raw, b"Done*")
    # As Dovecot: NO, the tree unchanged; whether or not the child exists, at any depth.
    for tag, new in ((b"c", b"Done/Sub"), (b"d", b"Done/New"), (b"e", b"Done/Sub/Deeper")):
        _, tagged = raw.cmd(tag + b" RENAME Done " + new)
        assert tagged == tag + b" NO [CANNOT] Cannot rename Done into its own child folder\r\n"
    assert tree(raw, b"Done*") == before == [b"Done", b"Done/Sub", b"Donegal"]
    ok(raw, b"f CREATE Elsewhere")
    ok(raw, b"g RENAME Elsewhere Done/Sub/Elsewhere")  # into another folder's child: fine
    ok(raw, b"h RENAME Donegal Done/Donegal")  # a name that merely starts the same is not a child
    assert tree(raw, b"Done*") == [b"Done", b"Done/Donegal", b"Done/Sub", b"Done/Sub/Elsewhere"]
    ok(raw, b"i RENAME Done/Sub Done/Sub2")  # a sibling of itself: fine
    assert tree(raw, b"Done*") == [b"Done", b"Done/Donegal", b"Done/Sub2", b"Done/Sub2/Elsewhere"]
    # INBOX is special (RFC 3501 §6.3.5): renaming it moves its messages, also to a child of its own.
    ok(raw, b"j RENAME INBOX INBOX/old")
    assert tree(raw, b"INBOX*") == [b"INBOX", b"INBOX/old"]


def test_rename_carries_children_their_messages_and_their_acls(server, raw):
    ok(raw, b"a CREATE Done/Sub/Deep")
    server.deliver("alice", message("in the child"), "Done/Sub")
    server.deliver("alice", message("deeper"), "Done/Sub/Deep")
    ok(raw, b"b SETACL Done bob@city.test lr")  # RFC 4314 §3.1
    ok(raw, b"c SETACL Done/Sub bob@city.test lrs")
    ok(raw, b"d SUBSCRIBE Done/Sub")
    bob = Raw(server.port, login="bob@city.test")
    try:
        assert tree(bob, b"Shared/alice@city.test/*") == [
            b"Shared/alice@city.test/Done", b"Shared/alice@city.test/Done/Sub"]
        ok(raw, b"e RENAME Done Projects/Done")
        assert tree(raw, b"*Done*") == [b"Projects/Done", b"Projects/Done/Sub", b"Projects/Done/Sub/Deep"]
        assert ok(raw, b"f STATUS Projects/Done/Sub (MESSAGES)") == [
            b"* STATUS Projects/Done/Sub (MESSAGES 1)\r\n"]
        assert ok(raw, b"g STATUS Projects/Done/Sub/Deep (MESSAGES)") == [
            b"* STATUS Projects/Done/Sub/Deep (MESSAGES 1)\r\n"]
        # The rights went with the folders (they belong to the folder, not to its name).
        assert ok(raw, b"h GETACL Projects/Done") == [
            b"* ACL Projects/Done alice@city.test lrswipkxtea bob@city.test lr\r\n"]
        assert ok(raw, b"i GETACL Projects/Done/Sub") == [
            b"* ACL Projects/Done/Sub alice@city.test lrswipkxtea bob@city.test lrs\r\n"]
        assert ok(raw, b"j GETACL Projects/Done/Sub/Deep") == [
            b"* ACL Projects/Done/Sub/Deep alice@city.test lrswipkxtea\r\n"]
        assert raw.cmd(b"k GETACL Done")[1].startswith(b"k NO [NONEXISTENT]")
        # The grantee sees the new names, reads under them, and the old names are gone for him too.
        assert ok(bob, b'l LIST "" "Shared/alice@city.test/*"') == [  # Projects: a parent he may not open
            b'* LIST (\\Noselect \\HasChildren) "/" Shared/alice@city.test/Projects\r\n',
            b'* LIST (\\HasChildren) "/" Shared/alice@city.test/Projects/Done\r\n',
            b'* LIST (\\HasNoChildren) "/" Shared/alice@city.test/Projects/Done/Sub\r\n']
        untagged = ok(bob, b"m EXAMINE Shared/alice@city.test/Projects/Done/Sub")
        assert b"* 1 EXISTS\r\n" in untagged
        assert bob.cmd(b"n EXAMINE Shared/alice@city.test/Done/Sub")[1].startswith(b"n NO [NONEXISTENT]")
        # The subscription went along too, as Dovecot moves it (see test_imap_rename_subscriptions).
        assert ok(raw, b'o LSUB "" "*Sub*"') == [b'* LSUB () "/" Projects/Done/Sub\r\n']
    finally:
        bob.close()
