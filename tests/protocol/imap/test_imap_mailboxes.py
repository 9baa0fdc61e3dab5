"""Mailbox commands with imapclient: LIST/LSUB (CHILDREN, SPECIAL-USE, LIST-EXTENDED, LIST-STATUS), CREATE/DELETE/RENAME, (UN)SUBSCRIBE, STATUS, Chinese names, QUOTA, ACL and shared folders."""

from __future__ import annotations

import contextlib
import imaplib

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from .harness import PASSWORD, Raw, message


@pytest.fixture
def client(server):
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
    c.login("alice@city.test", PASSWORD)
    yield c
    with contextlib.suppress(Exception):  # the test may have logged out already
        c.logout()


def names(listing) -> dict[str, tuple]:
    return {name: flags for flags, _delim, name in listing}


def test_special_use_folders_and_children(client):
    got = names(client.list_folders())
    assert set(got) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert b"\\Sent" in got["Sent"] and b"\\Trash" in got["Trash"] and b"\\Drafts" in got["Drafts"]
    assert b"\\Junk" in got["Junk"] and b"\\Archive" in got["Archive"]
    assert all(b"\\HasNoChildren" in f for f in got.values())
    client.create_folder("Projects/2026/Q1")  # RFC 3501 §6.3.3: parents are created too
    got = names(client.list_folders())
    assert b"\\HasChildren" in got["Projects"] and b"\\HasChildren" in got["Projects/2026"]
    assert b"\\HasNoChildren" in got["Projects/2026/Q1"]
    assert set(names(client.list_folders("", "Projects/%"))) == {"Projects/2026"}
    assert set(names(client.list_folders("Projects/", "*"))) == {"Projects/2026", "Projects/2026/Q1"}
    assert set(names(client.list_folders("", "inbox"))) == {"INBOX"}  # INBOX is case-insensitive
    assert client.find_special_folder(b"\\Sent") == "Sent"


def test_list_delimiter_and_extended_forms(server):
    c = Raw(server.port, login="alice@city.test")
    untagged, tagged = c.cmd(b'a LIST "" ""')
    assert untagged == [b'* LIST (\\Noselect) "/" ""\r\n'] and tagged.startswith(b"a OK")
    c.cmd(b"b CREATE Work/Reports")
    c.cmd(b"c SUBSCRIBE Work/Reports")  # CREATE subscribes nothing (as Dovecot)
    untagged, _ = c.cmd(b'd LIST (SUBSCRIBED RECURSIVEMATCH) "" "Work*" RETURN (CHILDREN)')
    assert untagged == [b'* LIST (\\HasChildren) "/" Work ("CHILDINFO" ("SUBSCRIBED"))\r\n',
                        b'* LIST (\\HasNoChildren \\Subscribed) "/" Work/Reports\r\n']
    untagged, _ = c.cmd(b'e LIST (SPECIAL-USE) "" "*"')
    assert len(untagged) == 5 and all(b"\\HasNoChildren" in u for u in untagged)
    server.deliver("alice", message("one"))
    untagged, _ = c.cmd(b'f LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))')  # RFC 5819
    assert untagged[0].startswith(b"* LIST") and untagged[1] == b"* STATUS INBOX (MESSAGES 1 UNSEEN 1 UIDNEXT 2)\r\n"
    untagged, _ = c.cmd(b'g LSUB "" "*"')
    assert b'* LSUB () "/" Work/Reports\r\n' in untagged and not any(b" Work\r\n" in u for u in untagged)
    c.close()


def test_create_delete_rename_subscribe(client):
    client.create_folder("Reports")
    with pytest.raises(IMAPClientError, match="ALREADYEXISTS"):
        client.create_folder("Reports")
    with pytest.raises(IMAPClientError, match="ALREADYEXISTS"):
        client.create_folder("inbox")
    client.rename_folder("Reports", "Old/Reports")
    assert "Old/Reports" in names(client.list_folders()) and "Reports" not in names(client.list_folders())
    client.unsubscribe_folder("Old/Reports")
    assert "Old/Reports" not in names(client.list_sub_folders())
    client.subscribe_folder("Old/Reports")
    assert "Old/Reports" in names(client.list_sub_folders())
    client.delete_folder("Old/Reports")
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.delete_folder("Old/Reports")
    with pytest.raises(IMAPClientError):
        client.delete_folder("INBOX")
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.select_folder("Nope")
    with pytest.raises(IMAPClientError):
        client.create_folder("Shared/mine")  # the other users' namespace is not for personal folders


def test_rename_inbox_moves_its_messages(server, client):
    server.deliver("alice", message("one"))
    server.deliver("alice", message("two"))
    client.rename_folder("INBOX", "Old mail")  # RFC 3501 §6.3.5: INBOX stays, emptied
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
    assert client.folder_status("Old mail", ["MESSAGES"])[b"MESSAGES"] == 2


def test_status_items(server, client):
    server.deliver("alice", message("one"))
    server.deliver("alice", message("two"), flags=1)
    st = client.folder_status("INBOX", ["MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"])
    assert st[b"MESSAGES"] == 2 and st[b"UNSEEN"] == 1 and st[b"UIDNEXT"] == 3 and st[b"RECENT"] == 2
    assert st[b"UIDVALIDITY"] > 0 and st[b"HIGHESTMODSEQ"] >= 2
    client.select_folder("INBOX")
    assert client.folder_status("INBOX", ["RECENT"])[b"RECENT"] == 0  # this session took them


def test_chinese_folder_names_in_modified_utf7_and_utf8(server, client):
    client.create_folder("收文/2026年")
    got = names(client.list_folders())
    assert "收文/2026年" in got and b"\\HasChildren" in got["收文"]
    c = Raw(server.port, login="alice@city.test")
    untagged, _ = c.cmd(b'a LIST "" "*"')
    assert b'* LIST (\\HasNoChildren) "/" &ZTZlhw-/2026&XnQ-\r\n' in untagged  # RFC 3501 §5.1.3
    c.cmd(b"b ENABLE UTF8=ACCEPT")
    untagged, _ = c.cmd(b'c LIST "" "*"')
    assert '* LIST (\\HasNoChildren) "/" "收文/2026年"\r\n'.encode() in untagged  # RFC 6855 §3
    untagged, tagged = c.cmd('d SELECT "收文/2026年"'.encode())
    assert tagged.startswith(b"d OK")
    c.close()
    server.deliver("alice", message("公文"), folder="收文/2026年")
    assert client.select_folder("收文/2026年")[b"EXISTS"] == 1


def test_quota(server):
    server.run(server.add_account("carol", quota_bytes=10 * 1024 * 1024, quota_messages=100))
    server.deliver("carol", message("one", "x" * 3000))
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("carol@city.test", PASSWORD)
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[0] == [b'INBOX ""'] and data[1][0].startswith(b'"" (STORAGE 4 10240 MESSAGE 1 100)')
    typ, data = c.getquota('""')
    assert data == [b'"" (STORAGE 4 10240 MESSAGE 1 100)']
    typ, data = c.setquota('""', "(STORAGE 1)")
    assert typ == "NO"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("alice@city.test", PASSWORD)
    assert c.getquotaroot("INBOX")[1][0] == [b"INBOX"]  # unlimited: no quota root
    c.logout()


def test_over_quota_append_is_refused(server):
    server.run(server.add_account("dave", quota_bytes=2000))
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("dave@city.test", PASSWORD)
    with pytest.raises(IMAPClientError, match="OVERQUOTA"):
        c.append("INBOX", message("big", "y" * 5000))
    c.logout()


def test_acl_and_shared_folder(server):
    server.run(server.add_account("docs"))
    server.deliver("docs", message("incoming document 1"), folder="INBOX")
    owner = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    owner.login("docs@city.test", PASSWORD)
    owner.create_folder("收文")
    owner.append("收文", message("来文", "来文 1"))
    alice = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    alice.login("alice@city.test", PASSWORD)
    assert not [n for n in names(alice.list_folders()) if n.startswith("Shared")]
    owner.setacl("收文", "alice@city.test", "lrs")  # RFC 4314 §3.1
    acl = owner.getacl("收文")
    assert (b"alice@city.test", b"lrs") in acl and (b"docs@city.test", b"lrswipkxtea") in acl
    got = names(alice.list_folders())
    assert b"\\Noselect" in got["Shared"] and b"\\Noselect" in got["Shared/docs@city.test"]
    assert "Shared/docs@city.test/收文" in got and "Shared/docs@city.test/INBOX" not in got
    info = alice.select_folder("Shared/docs@city.test/收文")
    assert info[b"EXISTS"] == 1 and info[b"READ-WRITE"]  # "s" makes it read-write for \Seen
    assert alice.fetch("1", ["BODY[]"])[1][b"BODY[]"].endswith("来文 1\r\n".encode())
    assert b"\\Seen" in alice.get_flags("1")[1]
    with pytest.raises(IMAPClientError, match="NOPERM"):  # no "i"
        alice.append("Shared/docs@city.test/收文", message("not allowed"))
    with pytest.raises(IMAPClientError, match="NOPERM"):  # no "a"
        alice.getacl("Shared/docs@city.test/收文")
    assert alice.add_flags("1", [b"\\Flagged"]) == {1: (b"\\Seen", b"\\Recent")}  # no "w": not set
    owner.setacl("收文", "alice@city.test", "-lrs")  # every right removed: the entry goes
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        alice.select_folder("Shared/docs@city.test/收文")
    for c in (owner, alice):
        c.logout()


def test_acl_commands_raw(server):
    server.run(server.add_account("docs"))
    c = Raw(server.port, login="docs@city.test")
    assert c.cmd(b"a SETACL INBOX alice@city.test +lr")[1].startswith(b"a OK")
    untagged, _ = c.cmd(b"b GETACL INBOX")
    assert untagged == [b"* ACL INBOX docs@city.test lrswipkxtea alice@city.test lr\r\n"]
    untagged, _ = c.cmd(b"c LISTRIGHTS INBOX alice@city.test")
    assert untagged == [b'* LISTRIGHTS INBOX alice@city.test "" l r s w i p k x t e a\r\n']
    untagged, _ = c.cmd(b"d MYRIGHTS INBOX")
    assert untagged == [b"* MYRIGHTS INBOX lrswipkxtea\r\n"]
    assert c.cmd(b"e SETACL INBOX nobody@city.test lr")[1].startswith(b"e NO [NONEXISTENT]")
    assert c.cmd(b"f SETACL INBOX alice@city.test lrz")[1].startswith(b"f BAD")
    assert c.cmd(b"g DELETEACL INBOX alice@city.test")[1].startswith(b"g OK")
    untagged, _ = c.cmd(b"h GETACL INBOX")
    assert untagged == [b"* ACL INBOX docs@city.test lrswipkxtea\r\n"]
    c.close()
    a = Raw(server.port, login="alice@city.test")
    assert a.cmd(b"a MYRIGHTS Shared/docs@city.test/INBOX")[1].startswith(b"a NO [NONEXISTENT]")
    a.close()
