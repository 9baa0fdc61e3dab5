"""ENVELOPE address lists from the RFC text: groups whose only content is a comment, and repeated address fields."""

from __future__ import annotations

from mailboxes.headers import Address, originator, parse_addresses
from mailboxes.mime import parse_message
from mailserver.imap.render import envelope_bytes

START = lambda name: Address(None, None, name, None)  # noqa: E731  RFC 3501 §7.4.2 group start marker
END = Address(None, None, None, None)                  # RFC 3501 §7.4.2 group end marker


def A(mailbox, host, name=None):
    return Address(name, None, mailbox, host, name)


# --- a comment is CFWS, never a mailbox ----------------------------------------------------------

def test_empty_groups_are_a_start_and_an_end_marker_only():
    # RFC 5322 §3.4: group = display-name ":" [group-list] ";" [CFWS], and group-list may be CFWS alone;
    # RFC 3501 §7.4.2: a group is (NIL NIL "name" NIL) ... (NIL NIL NIL NIL). An empty group is the two markers.
    assert parse_addresses("group:;, group2: (foo) ;") == (START("group"), END, START("group2"), END)
    assert parse_addresses("undisclosed-recipients: (none) ;") == (START("undisclosed-recipients"), END)
    assert parse_addresses("g: (a) (b) , (c) ;") == (START("g"), END)


def test_a_comment_between_the_members_of_a_group_adds_nothing():
    assert parse_addresses("team: a@x.org, (between) , b@x.org (Bee);") == (
        START("team"), A("a", "x.org"), A("b", "x.org", "Bee"), END)


def test_a_field_or_list_element_of_only_comments_is_empty():
    # RFC 5322 §3.4 obs-addr-list allows empty elements ("," with CFWS); they name no mailbox.
    assert parse_addresses("(nobody)") == ()
    assert parse_addresses("a@x.org, (nothing here), b@x.org") == (A("a", "x.org"), A("b", "x.org"))


def test_a_comment_still_names_a_bare_addr_spec():
    # the comment after "addr (Name)" stays the display name (Dovecot does the same)
    assert parse_addresses("user@domain (Real Name)") == (A("user", "domain", "Real Name"),)
    assert parse_addresses("Name <>") == (Address("Name", None, "MISSING_MAILBOX", "MISSING_DOMAIN", "Name"),)


def test_envelope_bytes_of_the_dovecot_group_vector():
    # the message and ENVELOPE of Dovecot's src/lib-imap/test-imap-envelope.c (copied from imaptest)
    raw = (b"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\n"
           b"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"
           b"Cc: group:;, group2: (foo) ;\r\n\r\nbody\r\n")
    real = b'(("Real Name" NIL "user" "domain"))'
    assert envelope_bytes(parse_message(raw).envelope) == (
        b'("Thu, 15 Feb 2007 01:02:03 +0200" NIL ' + real + b" " + real + b" " + real + b" "
        b'((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
        b'(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) '
        b'((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)')


# --- repeated address fields ---------------------------------------------------------------------

REPEATED = (b"Date: Mon, 02 Nov 2026 10:00:00 +0800\r\nSubject: first\r\nSubject: second\r\n"
            b"From: carol@city.test\r\nTo: alice@city.test\r\nCc: Bob <bob@city.test>\r\n"
            b"Message-ID: <one@city.test>\r\nMessage-ID: <two@city.test>\r\n"
            b"Cc: dave@city.test, ops: erin@city.test;\r\nTo: \"Frank\r\nTo: gina@city.test\r\n"
            b"Bcc: h@city.test\r\nBcc: i@city.test\r\nReply-To: r1@city.test\r\nReply-To: r2@city.test\r\n"
            b"\r\nbody\r\n")


def test_every_to_cc_and_bcc_field_is_read_in_header_order():
    # RFC 5322 §3.6 allows one To, one Cc and one Bcc; broken mail repeats them, and a recipient
    # in the second field must still show in ENVELOPE (reply-all, SEARCH, the client's list).
    env = parse_message(REPEATED).envelope
    assert env.to == (A("alice", "city.test"), A("Frank", "MISSING_DOMAIN"), A("gina", "city.test"))
    assert env.cc == (A("bob", "city.test", "Bob"), A("dave", "city.test"), START("ops"), A("erin", "city.test"), END)
    assert env.bcc == (A("h", "city.test"), A("i", "city.test"))
    assert env.reply_to == (A("r1", "city.test"), A("r2", "city.test"))


def test_each_field_is_parsed_on_its_own():
    # the unterminated quote in the second To field runs to the end of that field only (RFC 5322 §2.2:
    # a field ends at its CRLF), so gina in the third field is not swallowed by it
    env = parse_message(REPEATED).envelope
    assert env.to[-1] == A("gina", "city.test")


def test_the_string_fields_keep_their_first_occurrence():
    env = parse_message(REPEATED).envelope
    assert env.subject == "first" and env.message_id == "<one@city.test>"


def test_repeated_from_and_sender_are_concatenated_and_defaults_still_apply():
    raw = (b"From: a@x.org\r\nSender: \r\nFrom: B <b@y.org>\r\nTo: t@x.org\r\n\r\nbody\r\n")
    env = parse_message(raw).envelope
    assert env.from_ == (A("a", "x.org"), A("b", "y.org", "B"))
    # RFC 3501 §7.4.2: an empty Sender (and a missing Reply-To) is given as From
    assert env.sender == env.from_ and env.reply_to == env.from_


def test_embedded_message_envelope_reads_every_field_too():
    inner = b"From: x@y.org\r\nTo: one@y.org\r\nTo: two@y.org\r\nCc: g: (only a comment);\r\n\r\ninner\r\n"
    raw = (b"From: a@x.org\r\nTo: b@x.org\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + inner)
    env = parse_message(raw).body.message.envelope
    assert env.to == (A("one", "y.org"), A("two", "y.org"))
    assert env.cc == (START("g"), END)


def test_the_submission_rule_still_refuses_a_second_from_field():
    # ENVELOPE shows both From fields; submission and the own-domain check still refuse such a message
    # (RFC 5322 §3.6.2 allows one From), since they read originator(), not the envelope.
    raw = b"From: a@x.org\r\nFrom: b@y.org\r\nTo: t@x.org\r\n\r\nbody\r\n"
    assert originator(raw).problem is not None and originator(raw).problem.name == "SEVERAL_FROM"
