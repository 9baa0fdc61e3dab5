"""Malformed input from a raw-bytes client: BAD with nothing changed, and the connection and the server stay up."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import Raw, message


def still_fine(server, c: Raw, tag: bytes = b"zz") -> None:
    assert c.cmd(tag + b" NOOP")[1].startswith(tag + b" OK")
    other = Raw(server.port)  # and the server still accepts others
    assert other.greeting.startswith(b"* OK")
    other.close()


def test_garbage_lines_get_bad(server):
    c = Raw(server.port, login="alice@city.test")
    for junk in (b"", b"   ", b"*", b"+ hello", b"a", b"a FROB", b"a SELECT", b"a\x00 NOOP", b"\xff\xfe\xfd",
                 b"a SELECT (INBOX", b'a SELECT "unterminated', b"a FETCH 1:x FLAGS", b"a UID FROB 1",
                 b"a LOGIN", b"a STORE 1 FLAGS", b"a FETCH 0 FLAGS", b"a FETCH 4294967296 FLAGS",
                 b"a SEARCH " + b"(" * 200 + b"ALL" + b")" * 200, b"a SEARCH " + b"NOT " * 200 + b"ALL",
                 b"a CREATE " + b"x/" * 100 + b"x"):  # invalid modified UTF-7 is NO: test_imap_names.py
        c.send(junk + b"\r\n")
        if junk.strip():
            line = c.line()
            assert b" BAD " in line, (junk, line)
    still_fine(server, c)
    c.close()


def test_bad_commands_change_nothing(server):
    server.deliver("alice", message("keep me"))
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    assert c.cmd(b"a STORE 1 +FLAGS (\\Deleted) EXTRA")[1].startswith(b"a BAD")
    assert c.cmd(b"b STORE 7 +FLAGS (\\Deleted)")[1].startswith(b"b BAD")  # beyond EXISTS
    untagged, _ = c.cmd(b"c FETCH 1 (FLAGS)")
    assert b"\\Deleted" not in untagged[0]
    assert c.cmd(b"d CREATE")[1].startswith(b"d BAD")
    assert c.cmd(b"e EXPUNGE now")[1].startswith(b"e BAD")
    assert c.cmd(b"f SELECT INBOX")[1].startswith(b"f OK")  # still logged in, still there
    c.close()


def test_overlong_line_and_literals(server):
    c = Raw(server.port)
    c.send(b"a LOGIN " + b"x" * 200_000 + b" y\r\n")  # over max_line: discarded as it arrives
    assert c.line().startswith(b"a BAD [TOOBIG]")
    c.send(b"b LOGIN {999999999}\r\n")  # a literal too big before login: no "+"
    assert c.line().startswith(b"b BAD [TOOBIG]")
    c.send(b"c LOGIN {5+}\r\nalice {9+}\r\nwrongpass\r\n")  # LITERAL+ login, wrong password
    assert c.line().startswith(b"c NO [AUTHENTICATIONFAILED]")
    c.send(b"d NOOP {3}\r\n")  # a literal where the grammar has none: refused before "+"
    assert c.line().startswith(b"d BAD")
    c.send(b"e LOGIN {14}\r\n")
    assert c.line().startswith(b"+ ")
    c.send(b"alice@city.test\r\n")  # one octet more than announced: it lands in the command text
    assert c.line().startswith(b"e BAD")
    still_fine(server, c, b"y")
    c.close()


def test_client_vanishing_mid_literal_and_mid_command(server):
    for payload in (b"a LOGIN {10}\r\nabc", b"a APPEND INBOX {100+}\r\nabc", b"a NOOP", b"\xff" * 1000):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.recv(1000)
        if payload.startswith(b"a APPEND"):
            s.sendall(b"l LOGIN alice@city.test secret-pw\r\n")
            s.recv(1000)
        s.sendall(payload)
        s.close()
    c = Raw(server.port, login="alice@city.test")
    still_fine(server, c)
    c.close()


def test_pipelined_commands_run_in_order(server):
    c = Raw(server.port)
    c.send(b"a LOGIN alice@city.test secret-pw\r\nb SELECT INBOX\r\nc CREATE Piped\r\nd LIST \"\" Piped\r\n"
           b"e LOGOUT\r\n")
    _, t = c.until(b"a")
    assert t.startswith(b"a OK")
    for tag in (b"b", b"c", b"d"):
        assert c.until(tag)[1].startswith(tag + b" OK")
    untagged, t = c.until(b"e")
    assert untagged == [b"* BYE Logging out\r\n"] and t.startswith(b"e OK")
    assert c.line() == b""
    c.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"FETCH", b"UID", b"STORE", b"SEARCH", b"(", b")", b"{3}", b"{2+}", b"\"", b"\\", b"*",
                     b"1:*", b"BODY[", b"]<", b"INBOX", b"\x00", b" ", b"\r\n", b"NIL", b"~{1}"]),
), max_size=12))
@pytest.mark.slow
def test_fuzzed_commands_never_take_the_session_down(server, parts):
    c = Raw(server.port, login="alice@city.test")
    c.cmd(b"s SELECT INBOX")
    c.send(b"f " + b"".join(parts).replace(b"\n", b" ") + b"\r\n")
    c.send(b"\r\n" * 3 + b"zz NOOP\r\n")  # whatever state the junk left, the next line is a command again
    for _ in range(50):  # the junk's own replies, then zz's
        line = c.line()
        assert line, "server closed the connection"
        if line.startswith(b"zz "):
            break
        if line.startswith(b"+ "):  # a synchronising literal was accepted: feed it
            c.send(b"xxxxxxxxxx\r\n")
    else:
        raise AssertionError(f"no reply to zz NOOP in 50 lines; last {line!r}")
    assert line.startswith(b"zz OK"), line
    c.close()
