"""ENVELOPE address lists seen by clients (issue 8, point 7): a comment in an empty group, repeated To and Cc fields."""

from __future__ import annotations

from .harness import PASSWORD, Raw

GROUPS = (b"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\n"
          b"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"
          b"Cc: group:;, group2: (foo) ;\r\n\r\nbody\r\n")

REPEATED = (b"Date: Mon, 02 Nov 2026 10:00:00 +0800\r\nFrom: carol@city.test\r\nSubject: Budget\r\n"
            b"To: alice@city.test\r\nCc: Bob <bob@city.test>\r\nMessage-ID: <rep@city.test>\r\n"
            b"Cc: dave@city.test\r\nTo: erin@city.test\r\n\r\nbody\r\n")


def _fetch_envelope(server, raw: bytes, *searches: list) -> tuple:
    """Deliver `raw` to alice, then with imapclient: its parsed ENVELOPE and the result of each SEARCH."""
    from imapclient import IMAPClient

    server.deliver("alice", raw)
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX", readonly=True)
    env = c.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"]
    found = [c.search(criteria) for criteria in searches]
    c.logout()
    return env, found


def test_imapclient_reads_an_empty_group_with_a_comment_as_two_markers(server):
    # RFC 3501 §7.4.2: a group is a start marker (NIL NIL "name" NIL) and an end marker (NIL NIL NIL NIL);
    # "(foo)" in "group2: (foo) ;" is CFWS (RFC 5322 §3.4 group-list), not a mailbox.
    from imapclient.response_types import Address

    env, _ = _fetch_envelope(server, GROUPS)
    start, end = (lambda n: Address(None, None, n, None)), Address(None, None, None, None)
    assert env.cc == (start(b"group"), end, start(b"group2"), end)
    assert env.to == (start(b"group"), Address(None, None, b"g1", b"d1.org"), Address(None, None, b"g2", b"d2.org"),
                      end, start(b"group2"), Address(None, None, b"g3", b"d3.org"), end)
    assert env.from_ == (Address(b"Real Name", None, b"user", b"domain"),)


def test_imapclient_sees_the_recipients_of_every_to_and_cc_field(server):
    # RFC 5322 §3.6 allows one To and one Cc; broken mail repeats them. Every recipient shows in
    # ENVELOPE, in header order, as SEARCH already finds them.
    from imapclient.response_types import Address

    env, (found_cc, found_to) = _fetch_envelope(server, REPEATED, ["CC", "dave@city.test"], ["TO", "erin@city.test"])
    assert env.to == (Address(None, None, b"alice", b"city.test"), Address(None, None, b"erin", b"city.test"))
    assert env.cc == (Address(b"Bob", None, b"bob", b"city.test"), Address(None, None, b"dave", b"city.test"))
    assert env.subject == b"Budget" and env.message_id == b"<rep@city.test>"
    assert found_cc == [1] and found_to == [1]


def test_envelope_transcript_bytes(server):
    # The exact octets on the wire: Dovecot's test vector (src/lib-imap/test-imap-envelope.c) for the groups,
    # then the merged To and Cc lists.
    server.deliver("alice", GROUPS)
    server.deliver("alice", REPEATED)
    c = Raw(server.port, login="alice@city.test")
    assert c.cmd(b"s SELECT INBOX")[1].startswith(b"s OK")
    untagged, tagged = c.cmd(b"f FETCH 1:2 ENVELOPE")
    assert tagged.startswith(b"f OK"), tagged
    real = b'(("Real Name" NIL "user" "domain"))'
    carol = b'((NIL NIL "carol" "city.test"))'
    assert untagged == [
        b'* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL ' + real + b" " + real + b" " + real + b" "
        b'((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
        b'(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) '
        b'((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) NIL NIL NIL))\r\n',
        b'* 2 FETCH (ENVELOPE ("Mon, 02 Nov 2026 10:00:00 +0800" "Budget" ' + carol + b" " + carol + b" " + carol + b" "
        b'((NIL NIL "alice" "city.test")(NIL NIL "erin" "city.test")) '
        b'(("Bob" NIL "bob" "city.test")(NIL NIL "dave" "city.test")) NIL NIL "<rep@city.test>"))\r\n',
    ]
    c.close()
