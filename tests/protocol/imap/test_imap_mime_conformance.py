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


QP_MESSAGE = (b"From: carol@city.test\r\nTo: alice@city.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
              b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
              b"hello  \r\nfoo\t \t= \r\n=62\r\n--b1--\r\n")


def test_binary_fetch_decodes_quoted_printable_by_rfc2045(server):
    # RFC 3516 §4.2: BINARY[1] is the part with its CTE removed; RFC 2045 §6.7 says how: trailing white
    # space dropped (rule 3), "=" followed by white space is a soft break (rule 5). The part body is
    # "hello  \r\nfoo\t \t= \r\n=62" (the CRLF before "--b1--" belongs to the delimiter, RFC 2046 §5.1.1).
    from imapclient import IMAPClient

    from .harness import PASSWORD

    server.deliver("alice", QP_MESSAGE)
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX", readonly=True)
    got = c.fetch([1], ["BINARY.PEEK[1]", "BINARY.SIZE[1]", "BODY.PEEK[1]"])[1]
    c.logout()
    assert got[b"BINARY[1]"] == b"hello\r\nfoo\t \tb"
    assert got[b"BINARY.SIZE[1]"] == 5 + 2 + 3 + 3 + 1  # hello CRLF foo TAB SP TAB b
    assert got[b"BODY[1]"] == b"hello  \r\nfoo\t \t= \r\n=62"   # BODY[] stays the stored, encoded octets


def _client(server):
    from imapclient import IMAPClient

    from .harness import PASSWORD

    c = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX", readonly=True)
    return c


def test_reused_boundary_attachment_is_visible_in_bodystructure(server):
    from tests.unit.mime.samples import reused_boundary_message

    server.deliver("alice", reused_boundary_message())
    c = _client(server)
    got = c.fetch([1], ["BODYSTRUCTURE", "BODY.PEEK[1.1]", "BODY.PEEK[2]", "BINARY.PEEK[2]"])[1]
    c.logout()
    bs = got[b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"mixed"
    alternative, pdf = bs[0]
    assert alternative.is_multipart and alternative[1] == b"alternative"
    assert [p[:2] for p in alternative[0]] == [(b"text", b"plain"), (b"text", b"html")]
    assert pdf[:2] == (b"application", b"pdf") and pdf[8] == (b"attachment", (b"filename", b"minutes.pdf"))
    assert got[b"BODY[1.1]"] == b"See the minutes."
    assert got[b"BODY[2]"] == b"JVBERi0xLjQK" and got[b"BINARY[2]"] == b"%PDF-1.4\n"


def test_empty_part_of_boundaryless_multipart_is_an_empty_string(server):
    # BODYSTRUCTURE reports one text/plain part of 0 octets; BODY[1] must be that part: "" (not NIL)
    server.deliver("alice", b"From: carol@city.test\r\nSubject: nb\r\nMIME-Version: 1.0\r\n"
                            b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n")
    c = _client(server)
    got = c.fetch([1], ["BODYSTRUCTURE", "BODY.PEEK[1]", "BINARY.PEEK[1]", "BINARY.SIZE[1]", "BODY.PEEK[TEXT]"])[1]
    c.logout()
    (only,), subtype = got[b"BODYSTRUCTURE"][0], got[b"BODYSTRUCTURE"][1]
    assert subtype == b"mixed" and only[:7] == (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 0)
    assert got[b"BODY[1]"] == b"" and got[b"BINARY[1]"] == b"" and got[b"BINARY.SIZE[1]"] == 0
    assert got[b"BODY[TEXT]"] == b"no boundary here\r\n"


ATTACHMENT = bytes(range(256)) + b"\x00\x00end"   # NULs, CR and LF alone, 8-bit octets
BINARY_MESSAGE = (b"From: carol@city.test\r\nTo: alice@city.test\r\nSubject: scan\r\nMIME-Version: 1.0\r\n"
                  b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
                  b"--zz\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe scan is attached.\r\n"
                  b"--zz\r\nContent-Type: application/octet-stream; name=scan.bin\r\n"
                  b"Content-Transfer-Encoding: binary\r\n\r\n" + ATTACHMENT + b"\r\n--zz--\r\n")


def _append_literal8(c: Raw, tag: bytes, data: bytes) -> bytes:
    c.send(tag + b" APPEND INBOX ~{%d}\r\n" % len(data))
    assert c.line().startswith(b"+")   # RFC 3516 §4.4: literal8, synchronising
    c.send(data + b"\r\n")
    return c.until(tag)[1]


def test_literal8_append_with_nuls_is_stored_as_base64(server):
    # RFC 3516 §4.4 accepts the binary part; RFC 3501 §4.3 forbids NUL in the BODY[] literal, so the part
    # is stored base64 (as Dovecot does) and BINARY[2] still gives the octets that were sent (RFC 3516 §4.2).
    import base64

    c = Raw(server.port, login="alice@city.test")
    tagged = _append_literal8(c, b"a", BINARY_MESSAGE)
    assert tagged.startswith(b"a OK [APPENDUID "), tagged
    c.cmd(b"s SELECT INBOX")
    untagged, tagged = c.cmd(b"f FETCH 1 (BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[2.MIME])")
    assert tagged.startswith(b"f OK")
    wire = b"".join(untagged)
    assert b"\x00" not in wire
    assert b'("application" "octet-stream" ("name" "scan.bin") NIL NIL "base64" ' in wire
    assert b"BODY[1] {21}\r\nThe scan is attached." in wire   # the text part is untouched
    mime = b"Content-Type: application/octet-stream; name=scan.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert b"BODY[2.MIME] {%d}\r\n" % len(mime) + mime in wire
    body2 = wire.split(b"BODY[2] {", 1)[1].split(b"}\r\n", 1)[1]
    assert base64.b64decode(body2[:body2.index(b" BODY[2.MIME]")]) == ATTACHMENT
    untagged, tagged = c.cmd(b"g FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
    assert tagged.startswith(b"g OK")
    assert untagged == [b"* 1 FETCH (BINARY[2] ~{%d}\r\n" % len(ATTACHMENT) + ATTACHMENT
                        + b" BINARY.SIZE[2] %d)\r\n" % len(ATTACHMENT)]
    c.close()


def test_nul_in_a_delivered_message_is_never_sent_in_a_body_literal(server):
    # Mail that reached the store with a NUL (not through APPEND) is served as Dovecot does: 0x80 in its
    # place in BODY[] literals (same length), the NUL itself only in a BINARY literal8.
    server.deliver("alice", b"From: carol@city.test\r\nSubject: nul\r\nContent-Type: text/plain\r\n"
                            b"Content-Transfer-Encoding: 8bit\r\n\r\nab\x00cd\r\n")
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    untagged, tagged = c.cmd(b"f FETCH 1 (BODY.PEEK[1] BODY.PEEK[TEXT] BINARY.PEEK[1])")
    assert tagged.startswith(b"f OK")
    assert untagged == [b"* 1 FETCH (BODY[1] {7}\r\nab\x80cd\r\n BODY[TEXT] {7}\r\nab\x80cd\r\n"
                        b" BINARY[1] ~{7}\r\nab\x00cd\r\n)\r\n"]
    c.close()


def test_multiappend_converts_binary_parts_like_append(server):
    # MULTIAPPEND (RFC 3502) takes the same preparation as APPEND: no raw NUL ever reaches a BODY literal.
    c = Raw(server.port, login="alice@city.test")
    c.send(b"m APPEND INBOX ~{%d}\r\n" % len(BINARY_MESSAGE))
    assert c.line().startswith(b"+")
    c.send(BINARY_MESSAGE + b" ~{%d}\r\n" % len(BINARY_MESSAGE))
    assert c.line().startswith(b"+")
    c.send(BINARY_MESSAGE + b"\r\n")
    tagged = c.until(b"m")[1]
    assert tagged.startswith(b"m OK [APPENDUID "), tagged
    c.cmd(b"s SELECT INBOX")
    untagged, tagged = c.cmd(b"f FETCH 1:2 (BODY.PEEK[] BINARY.PEEK[2])")
    assert tagged.startswith(b"f OK")
    bodies = b"".join(ln.split(b"BINARY[2]")[0] for ln in untagged)
    assert len(untagged) == 2 and b"\x00" not in bodies
    assert all(ATTACHMENT in ln for ln in untagged)
    c.close()
