"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: advertised both, rev2 behaviour only after ENABLE IMAP4rev2 (RFC 9051 §6.3.1).

Each difference is checked as exact bytes with and without ENABLE IMAP4rev2: a rev1 client
sees exactly what it saw before rev2 was added.
"""

from __future__ import annotations

import re

import imapclient
import pytest

from .harness import PASSWORD, Raw, message

_CAPS = b"IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE"
_FLAGS = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
_PERMANENT = b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen \\*)] Flags permitted\r\n"


def _client(server, rev2: bool) -> Raw:
    c = Raw(server.port, login="alice@city.test")
    if rev2:
        assert c.cmd(b"e0 ENABLE IMAP4rev2") == ([b"* ENABLED IMAP4rev2\r\n"], b"e0 OK ENABLE completed\r\n")
    return c


def _uidvalidity(untagged: list[bytes]) -> int:
    return int(next(re.search(rb"UIDVALIDITY (\d+)", ln).group(1) for ln in untagged if b"UIDVALIDITY" in ln))


def _deliver(server, n: int) -> None:
    for i in range(n):
        server.deliver("alice", message(f"m{i}", msgid=f"r2-{i}"))


def test_both_revisions_advertised_before_and_after_login(server):
    c = Raw(server.port)
    try:
        assert c.greeting.startswith(b"* OK [CAPABILITY " + _CAPS + b" ")
        untagged, _ = c.cmd(b"a CAPABILITY")
        assert untagged[0].startswith(b"* CAPABILITY " + _CAPS + b" ")
        _, tagged = c.cmd(b"b LOGIN alice@city.test " + PASSWORD.encode())
        assert tagged.startswith(b"b OK [CAPABILITY " + _CAPS + b" NAMESPACE ")
    finally:
        c.close()


def test_enable_is_case_insensitive_and_said_once(server):
    c = Raw(server.port, login="alice@city.test")
    try:
        assert c.cmd(b"a enable imap4rev2") == ([b"* ENABLED IMAP4rev2\r\n"], b"a OK ENABLE completed\r\n")
        assert c.cmd(b"b ENABLE IMAP4rev2") == ([b"* ENABLED\r\n"], b"b OK ENABLE completed\r\n")
        c.cmd(b"c SELECT INBOX")  # RFC 5161 §3.1: ENABLE only before SELECT, as for the others
        assert c.cmd(b"d ENABLE IMAP4rev2")[1] == b"d BAD ENABLE is not valid in this state\r\n"
    finally:
        c.close()


@pytest.mark.parametrize("verb", [b"SELECT", b"EXAMINE"])
def test_select_in_rev1_and_rev2(server, verb):
    _deliver(server, 3)
    mode = b"READ-WRITE" if verb == b"SELECT" else b"READ-ONLY"
    permanent = _PERMANENT if verb == b"SELECT" else b"* OK [PERMANENTFLAGS ()] Flags permitted\r\n"
    rev1, rev2 = _client(server, False), _client(server, True)
    try:
        untagged, tagged = rev2.cmd(b"a " + verb + b" INBOX")  # RFC 9051 §6.3.2: LIST, no RECENT, no [UNSEEN]
        v = _uidvalidity(untagged)
        assert untagged == [
            _FLAGS, permanent, b"* 3 EXISTS\r\n", b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
            b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % v, b"* OK [UIDNEXT 4] Predicted next UID\r\n",
            b"* OK [HIGHESTMODSEQ 4] Highest\r\n",
        ]
        assert tagged == b"a OK [" + mode + b"] " + verb + b" completed\r\n"
        untagged, tagged = rev1.cmd(b"a " + verb + b" INBOX")  # unchanged; the rev2 session took no \Recent
        assert untagged == [
            _FLAGS, permanent, b"* 3 EXISTS\r\n", b"* 3 RECENT\r\n", b"* OK [UNSEEN 1] First unseen is 1\r\n",
            b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % v, b"* OK [UIDNEXT 4] Predicted next UID\r\n",
            b"* OK [HIGHESTMODSEQ 4] Highest\r\n",
        ]
        assert tagged == b"a OK [" + mode + b"] " + verb + b" completed\r\n"
    finally:
        rev1.close()
        rev2.close()


def test_select_lists_the_mailbox_with_its_attributes(server):
    c = _client(server, True)
    try:
        assert c.cmd(b'a CREATE "\xc3\x84rger/Sub"')[1] == b"a OK CREATE completed\r\n"  # UTF-8 (RFC 9051 §5.1)
        untagged, _ = c.cmd(b'b SELECT "\xc3\x84rger"')
        assert b'* LIST (\\HasChildren) "/" "\xc3\x84rger"\r\n' in untagged
        untagged, _ = c.cmd(b'c EXAMINE "\xc3\x84rger/Sub"')
        assert b'* LIST (\\HasNoChildren) "/" "\xc3\x84rger/Sub"\r\n' in untagged
        untagged, _ = c.cmd(b"d SELECT Sent")
        assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n' in untagged
    finally:
        c.close()


def test_no_recent_flag_nor_response_in_rev2(server):
    _deliver(server, 2)
    rev2 = _client(server, True)
    rev1 = _client(server, False)
    try:
        rev2.cmd(b"a SELECT INBOX")
        assert rev2.cmd(b"b FETCH 1:* (FLAGS)")[0] == [b"* 1 FETCH (FLAGS ())\r\n", b"* 2 FETCH (FLAGS ())\r\n"]
        server.deliver("alice", message("new", msgid="r2-new"))
        assert rev2.cmd(b"c NOOP") == ([b"* 3 EXISTS\r\n"], b"c OK NOOP completed\r\n")
        assert rev2.cmd(b"d FETCH 3 (FLAGS)")[0] == [b"* 3 FETCH (FLAGS ())\r\n"]
        # Lenient: STATUS RECENT (absent from rev2's grammar) is still answered; RECENT counts unclaimed mail.
        assert rev2.cmd(b"e STATUS INBOX (RECENT)")[0] == [b"* STATUS INBOX (RECENT 3)\r\n"]
        # A rev1 session is still told the messages are recent: nobody else was.
        rev1.cmd(b"a SELECT INBOX")
        assert rev1.cmd(b"b FETCH 3 (FLAGS)")[0] == [b"* 3 FETCH (FLAGS (\\Recent))\r\n"]
        server.deliver("alice", message("newer", msgid="r2-newer"))
        assert rev1.cmd(b"c NOOP")[0] == [b"* 4 EXISTS\r\n", b"* 4 RECENT\r\n"]
        assert rev2.cmd(b"f NOOP")[0] == [b"* 4 EXISTS\r\n"]
    finally:
        rev1.close()
        rev2.close()


def test_search_answers_esearch_in_rev2_and_search_in_rev1(server):
    _deliver(server, 3)
    rev1, rev2 = _client(server, False), _client(server, True)
    try:
        for c in (rev1, rev2):
            c.cmd(b"a EXAMINE INBOX")
        # RFC 9051 §6.4.4, §7.3.4: ESEARCH with the tag, UID for UID SEARCH, no ALL when nothing matched.
        assert rev2.cmd(b"b SEARCH ALL")[0] == [b'* ESEARCH (TAG "b") ALL 1:3\r\n']
        assert rev2.cmd(b"c UID SEARCH 2:3")[0] == [b'* ESEARCH (TAG "c") UID ALL 2:3\r\n']
        assert rev2.cmd(b"d SEARCH SUBJECT nowhere")[0] == [b'* ESEARCH (TAG "d")\r\n']
        assert rev2.cmd(b"e UID SEARCH SUBJECT nowhere")[0] == [b'* ESEARCH (TAG "e") UID\r\n']
        assert rev2.cmd(b"f SEARCH RETURN (COUNT) ALL")[0] == [b'* ESEARCH (TAG "f") COUNT 3\r\n']
        assert rev2.cmd(b"g SORT (SUBJECT) UTF-8 ALL")[0] == [b"* SORT 1 2 3\r\n"]  # SORT is not rev2: as is
        untagged, _ = rev2.cmd(b"h SEARCH MODSEQ 1")  # CONDSTORE: MODSEQ of all matches (RFC 7162 §3.1.5)
        assert untagged == [b"* OK [HIGHESTMODSEQ 4] Highest\r\n", b'* ESEARCH (TAG "h") ALL 1:3 MODSEQ 4\r\n']
        assert rev1.cmd(b"b SEARCH ALL")[0] == [b"* SEARCH 1 2 3\r\n"]
        assert rev1.cmd(b"c UID SEARCH SUBJECT nowhere")[0] == [b"* SEARCH\r\n"]
        assert rev1.cmd(b"d SEARCH RETURN (COUNT) ALL")[0] == [b'* ESEARCH (TAG "d") COUNT 3\r\n']
    finally:
        rev1.close()
        rev2.close()


def test_mailbox_names_are_utf8_in_rev2_and_mutf7_in_rev1(server):
    rev2, rev1 = _client(server, True), _client(server, False)
    try:
        assert rev2.cmd(b'a CREATE "B\xc3\xbcro"')[1] == b"a OK CREATE completed\r\n"
        assert rev2.cmd(b'b LIST "" "B*"')[0] == [b'* LIST (\\HasNoChildren) "/" "B\xc3\xbcro"\r\n']
        assert rev1.cmd(b'b LIST "" "B*"')[0] == [b'* LIST (\\HasNoChildren) "/" B&APw-ro\r\n']
        assert rev2.cmd(b'c STATUS "B\xc3\xbcro" (MESSAGES)')[0] == [b'* STATUS "B\xc3\xbcro" (MESSAGES 0)\r\n']
        untagged, _ = rev2.cmd(b"d NAMESPACE")
        assert untagged == [b'* NAMESPACE (("" "/")) (("Shared/" "/")) NIL\r\n']
    finally:
        rev1.close()
        rev2.close()


@pytest.mark.parametrize("rev2", [False, True])
def test_status_deleted_and_size(server, rev2):
    _deliver(server, 3)
    c = _client(server, rev2)
    try:
        c.cmd(b"a SELECT INBOX")
        c.cmd(b"b STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        untagged, _ = c.cmd(b"c STATUS INBOX (MESSAGES DELETED)")  # RFC 9051 §6.3.11
        assert untagged == [b"* STATUS INBOX (MESSAGES 3 DELETED 2)\r\n"]
        untagged, _ = c.cmd(b"d STATUS INBOX (SIZE)")
        assert re.fullmatch(rb"\* STATUS INBOX \(SIZE \d+\)\r\n", untagged[0])
    finally:
        c.close()


@pytest.mark.parametrize("rev2", [False, True])
def test_list_children_attributes_and_the_delimiter_query(server, rev2):
    c = _client(server, rev2)
    try:
        c.cmd(b"a CREATE Work/Plans")
        assert c.cmd(b'b LIST "" ""')[0] == [b'* LIST (\\Noselect) "/" ""\r\n']  # RFC 9051 §6.3.9
        assert c.cmd(b'c LIST "" "Work*"')[0] == [b'* LIST (\\HasChildren) "/" Work\r\n',
                                                 b'* LIST (\\HasNoChildren) "/" Work/Plans\r\n']
    finally:
        c.close()


def test_imapclient_with_imap4rev2_enabled(server):
    _deliver(server, 2)
    c = imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
    try:
        c.login("alice@city.test", PASSWORD)
        assert b"IMAP4REV2" in c.capabilities() and b"IMAP4REV1" in c.capabilities()
        assert c.enable("IMAP4rev2") == [b"IMAP4rev2"]
        c.folder_encode = False  # rev2 names are UTF-8 (RFC 9051 §5.1)
        c._imap._encoding = "utf-8"  # as imaplib's own enable("UTF8=ACCEPT") does
        c.create_folder("Bücher")
        assert "Bücher".encode() in [name for _, _, name in c.list_folders()]  # undecoded without folder_encode
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 2 and b"RECENT" not in info
        assert info[b"LIST"] == [b'(\\HasNoChildren) "/" INBOX']
        assert {m: d[b"FLAGS"] for m, d in c.fetch([1, 2], ["FLAGS"]).items()} == {1: (), 2: ()}
        c.add_flags([1], [imapclient.DELETED])
        assert c.folder_status("INBOX", ["MESSAGES", "DELETED"]) == {b"MESSAGES": 2, b"DELETED": 1}
    finally:
        c.logout()


@pytest.mark.parametrize("rev2", [False, True])
def test_delete_of_a_level_that_only_has_children(server, rev2):
    c = _client(server, rev2)
    try:
        c.cmd(b"a CREATE Trips/2026")
        assert c.cmd(b"b DELETE Trips")[1] == b"b OK DELETE completed\r\n"
        assert c.cmd(b'c LIST "" "Trips*"')[0] == [b'* LIST (\\Noselect \\HasChildren) "/" Trips\r\n',
                                                  b'* LIST (\\HasNoChildren) "/" Trips/2026\r\n']
        # RFC 9051 §6.3.4, §7.1: deleting a \Noselect name with inferiors is NO [HASCHILDREN].
        code = b"HASCHILDREN] Name has inferior hierarchical names" if rev2 else b"NONEXISTENT] Mailbox does not exist"
        assert c.cmd(b"d DELETE Trips")[1] == b"d NO [" + code + b"\r\n"
        assert c.cmd(b"e DELETE Nowhere")[1] == b"e NO [NONEXISTENT] Mailbox does not exist\r\n"
    finally:
        c.close()


@pytest.mark.parametrize("rev2", [False, True])
def test_idle_announces_new_mail_without_recent_in_rev2(server, rev2):
    c = _client(server, rev2)
    try:
        c.cmd(b"a SELECT INBOX")
        c.send(b"i IDLE\r\n")
        assert c.line().startswith(b"+ ")
        server.deliver("alice", message("while idle", msgid="r2-idle"))
        assert c.line() == b"* 1 EXISTS\r\n"
        c.send(b"DONE\r\n")
        rest, tagged = c.until(b"i")
        assert rest == ([] if rev2 else [b"* 1 RECENT\r\n"]) and tagged == b"i OK IDLE terminated\r\n"
    finally:
        c.close()
