"""STARTTLS command injection (RFC 3501 §6.2.1, CVE-2011-0411): nothing sent in the clear behind STARTTLS runs after it."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest

from .harness import PASSWORD, ImapServer, wait_for

READ_CHUNK = 64 << 10  # the server's read size (mailserver.imap.server.READ_CHUNK)
INJECTED = b"y LOGIN bob@city.test " + PASSWORD.encode() + b"\r\n"


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _line(sock: socket.socket) -> bytes:
    """One response line, read octet by octet so nothing beyond it is taken from the socket."""
    out = bytearray()
    while not out.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            raise ConnectionError(f"closed after {bytes(out)!r}")
        out += b
    return bytes(out)


def _upgrade_and_check(sock: socket.socket) -> None:
    """After ``x OK``: handshake, then prove the session is still not authenticated and ``y`` never ran."""
    tls = _tls_context().wrap_socket(sock, server_hostname="localhost")
    tls.sendall(b"z SELECT INBOX\r\n")
    seen = []
    while not (line := _line(tls)).startswith(b"z "):
        seen.append(line)
    assert line.startswith(b"z BAD"), line  # SELECT is not valid before login: the injected LOGIN did not run
    assert not any(s.startswith(b"y ") for s in seen), seen
    tls.sendall(b"w LOGOUT\r\n")
    tls.close()


def _connect(server: ImapServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert _line(sock).startswith(b"* OK")
    return sock


@pytest.mark.parametrize("end", [12, 100, READ_CHUNK - 1, READ_CHUNK, READ_CHUNK + 1])  # 12: no padding
def test_command_pipelined_behind_starttls_never_runs(server, caplog, end):
    """``x STARTTLS`` at the start of the packet, or ending at, before or after the 64 KiB read boundary, then
    ``y LOGIN`` in the same packet."""
    starttls = b"x STARTTLS\r\n"
    padding = b"\r\n" * ((end - len(starttls)) // 2) + (b"\n" if (end - len(starttls)) % 2 else b"")
    assert len(padding + starttls) == end
    caplog.set_level(logging.WARNING, logger="postroom.imap")
    with _connect(server) as sock:
        sock.sendall(padding + starttls + INJECTED + b"y2 NOOP\r\n")
        assert _line(sock).startswith(b"x OK")
        _upgrade_and_check(sock)
    wait_for(lambda: "discarded" in caplog.text and "behind STARTTLS" in caplog.text, what="the discard logged")


def test_starttls_split_across_reads_then_injection(server):
    """The STARTTLS line arrives in two reads; the injected command comes with its second half."""
    with _connect(server) as sock:
        sock.sendall(b"x STARTT")
        wait_for(lambda: any(c.parser.buffered == 8 for c in server.service.connections), what="the half line read")
        sock.sendall(b"LS\r\n" + INJECTED)
        assert _line(sock).startswith(b"x OK")
        _upgrade_and_check(sock)


def test_injection_in_a_later_packet_before_the_handshake(server):
    """The injected command follows STARTTLS in its own packet, before the client's TLS handshake."""
    with _connect(server) as sock:
        sock.sendall(b"x STARTTLS\r\n")
        sock.sendall(INJECTED)
        assert _line(sock).startswith(b"x OK")
        try:
            _upgrade_and_check(sock)
        except (ssl.SSLError, ConnectionError):
            pass  # the injected octets reached the TLS layer as a broken ClientHello: refused, never run
    with _connect(server) as again:  # the server is still serving
        again.sendall(b"a NOOP\r\n")
        assert _line(again).startswith(b"a OK")


def test_starttls_then_login_over_tls_works(server):
    import imaplib

    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.starttls(_tls_context())
    assert c.login("alice@city.test", PASSWORD)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
