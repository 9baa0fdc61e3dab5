"""Quoted-printable decoding by the rules of RFC 2045 §6.7 and base64 lines by §6.8, each case from the RFC text."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from mailboxes.charsets import decode_transfer
from mailboxes.transfer import decode_qp, encode_base64_lines


def test_the_issue_example():
    # rule 3 drops "hello"'s trailing spaces; "= " is "=" then transport padding: a soft break (rule 5)
    assert decode_qp(b"hello  \r\nfoo\t \t= \r\n=62") == b"hello\r\nfoo\t \tb"


def test_rule_1_general_8bit_representation():
    # "=" followed by two hexadecimal digits is the octet; lower case is accepted (robustness note)
    assert decode_qp(b"=E4=BD=A0=e5=a5=bd") == "你好".encode()
    assert decode_qp(b"a=3Db") == b"a=b"


def test_rule_2_literal_representation_passes_through():
    assert decode_qp(b"Plain ASCII, no escapes.\r\n") == b"Plain ASCII, no escapes.\r\n"


def test_rule_3_trailing_white_space_is_deleted():
    # "any trailing white space on a line must be deleted, as it will necessarily have been added"
    assert decode_qp(b"one \t \r\ntwo\t\r\nthree  ") == b"one\r\ntwo\r\nthree"
    assert decode_qp(b"kept=20\r\n") == b"kept \r\n"          # encoded white space is data
    assert decode_qp(b"inner  space\r\n") == b"inner  space\r\n"


def test_rule_4_line_breaks_are_kept():
    assert decode_qp(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert decode_qp(b"a\nb\n") == b"a\nb\n"                 # a store that kept bare LFs


def test_rule_5_soft_line_breaks():
    assert decode_qp(b"Now's the time =\r\nfor all folk") == b"Now's the time for all folk"
    assert decode_qp(b"joined=  \t\r\nhere") == b"joinedhere"   # "=" then only white space
    assert decode_qp(b"last line=") == b"last line"
    assert decode_qp(b"=\r\n") == b""


def test_illegal_sequences_are_kept_as_they_are():
    # §6.7 note: "=" not followed by hex or a line break is illegal; keeping it is the robust reading
    assert decode_qp(b"a=zzb") == b"a=zzb"
    assert decode_qp(b"50% =x off") == b"50% =x off"
    assert decode_qp(b"a==\r\n41") == b"a=41"   # the first "=" is not an escape, the second a soft break


def test_a_carriage_return_with_no_line_feed_after_it_at_the_end_is_kept():
    # Not a line end (there is no LF): data, as the plain-text shortcut always kept it. The line-by-line
    # path dropped it when the part had an escape or trailing white space elsewhere.
    assert decode_qp(b"a\r") == b"a\r"
    assert decode_qp(b"=41\r") == b"A\r"
    assert decode_qp(b"x  \r\ny\r") == b"x\r\ny\r"


def test_decode_transfer_uses_the_rfc_rules():
    assert decode_transfer(b"hello  \r\nfoo\t \t= \r\n=62", "quoted-printable") == b"hello\r\nfoo\t \tb"


def test_base64_lines_are_76_characters():
    data = bytes(range(256)) * 3
    encoded = encode_base64_lines(data)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b"" and all(len(line) == 76 for line in lines[:-2]) and 0 < len(lines[-2]) <= 76
    assert base64.b64decode(encoded) == data
    assert encode_base64_lines(b"") == b""


@given(st.binary(max_size=300))
def test_qp_of_python_encoder_round_trips(data):
    import quopri

    encoded = quopri.encodestring(data.replace(b"\r", b""))   # quopri writes the canonical form
    assert decode_qp(encoded) == data.replace(b"\r", b"")
