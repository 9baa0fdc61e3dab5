"""MIME conformance seen by clients (issue 8, points 5 and 7): BINARY and quoted-printable, literal8 APPEND with NULs,
reused multipart boundaries, the empty part of a boundary-less multipart, 8-bit header field names."""

from __future__ import annotations

from .harness import Raw, message


def test_header_fields_with_a_non_ascii_field_name_answers_normally(server):
    # RFC 3501 §6.4.5: HEADER.FIELDS gives the lines whose names match, then the blank line. No header field
    # name can hold 0xFF (RFC 5322 §3.6.8 ftext is printable US-ASCII), so nothing matches.
    server.deliver("alice", message("Budget"))
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    untagged, tagged = c.cmd(b'a FETCH 1 BODY.PEEK[HEADER.FIELDS ("\xff")]')
    assert tagged.startswith(b"a OK"), tagged
    # header-fld-name is an astring: the 8-bit name comes back as a literal holding the byte sent
    assert untagged == [b"* 1 FETCH (BODY[HEADER.FIELDS ({1}\r\n\xff)] {2}\r\n\r\n)\r\n"]
    untagged, tagged = c.cmd(b'b FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT "\xff")]')
    assert tagged.startswith(b"b OK"), tagged
    assert untagged == [b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT {1}\r\n\xff)] {19}\r\nSubject: Budget\r\n\r\n)\r\n"]
    untagged, tagged = c.cmd(b'c FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT ("\xff" "Received")]')
    assert tagged.startswith(b"c OK") and b"Subject: Budget\r\n" in untagged[0]
    assert c.cmd(b"z NOOP")[1].startswith(b"z OK")
    c.close()
