"""IMAP behind a TCP load balancer: a PROXY header from a trusted source names the client; from others it is BAD.

The balancer is the test: it writes the header on the socket (from
127.0.0.1, trusted in the config) before imaplib speaks.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl

import pytest

from mailserver import proxylisten
from tests.unit.test_proxyproto import v2

from .harness import PASSWORD, ImapServer, Raw

CLIENT = "203.0.113.9"
V1 = f"PROXY TCP4 {CLIENT} 192.0.2.1 54321 143\r\n".encode()


class Proxied(imaplib.IMAP4):
    """imaplib behind a balancer: the header goes first on the socket."""

    def __init__(self, port: int, header: bytes) -> None:
        self.header = header
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout):
        sock = super()._create_socket(timeout)
        sock.sendall(self.header)
        return sock


class ProxiedSSL(imaplib.IMAP4_SSL):
    def __init__(self, port: int, header: bytes) -> None:
        self.header = header
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        super().__init__("127.0.0.1", port, ssl_context=ctx, timeout=30)

    def _create_socket(self, timeout):
        sock = imaplib.IMAP4._create_socket(self, timeout)
        sock.sendall(self.header)  # in the clear, before the TLS handshake
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


@pytest.fixture
def proxied_server(tmp_path):
    srv = ImapServer(tmp_path, proxy_trusted=["127.0.0.1/32"], limits={"auth_failures": 2}).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("header", [V1, v2(CLIENT, "192.0.2.1", 54321, 143)], ids=["v1", "v2"])
def test_the_client_named_by_the_header_is_the_session_peer(proxied_server, header, caplog):
    caplog.set_level(logging.INFO, logger="postroom")
    c = Proxied(proxied_server.port, header)
    # Plain-text LOGIN is allowed on loopback only, and the proxied client is not on loopback.
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED|LOGINDISABLED|TLS"):
        c.login("alice@city.test", PASSWORD)
    c.starttls(ssl_context=_no_verify())
    assert c.login("alice@city.test", PASSWORD)[0] == "OK"
    [conn] = proxied_server.service.connections
    assert conn.peer_ip == CLIENT
    c.logout()
    assert any(f"ip={CLIENT}" in r.getMessage() for r in caplog.records if r.getMessage().startswith("auth ok"))


def test_implicit_tls_behind_the_balancer(proxied_server):
    c = ProxiedSSL(proxied_server.tls_port, v2(CLIENT, "192.0.2.1", 4444, 993))
    assert c.login("alice@city.test", PASSWORD)[0] == "OK"
    c.logout()


@pytest.mark.slow
def test_the_login_throttle_counts_the_client_not_the_balancer(proxied_server):
    def login(ip: str, password: str) -> str:
        c = Proxied(proxied_server.port, f"PROXY TCP4 {ip} 192.0.2.1 1000 143\r\n".encode())
        try:
            c.starttls(ssl_context=_no_verify())
            return c.login("alice@city.test", password)[0]
        except imaplib.IMAP4.error as exc:
            return str(exc)
        finally:
            c.shutdown()

    assert "AUTHENTICATIONFAILED" in login("198.51.100.1", "wrong-1")
    assert "AUTHENTICATIONFAILED" in login("198.51.100.2", "wrong-2")
    assert "UNAVAILABLE" in login("198.51.100.3", PASSWORD)  # the account: two failures from two clients
    # Nothing was counted against the balancer's own address: another client logs in through it.
    c = Proxied(proxied_server.port, b"PROXY TCP4 198.51.100.7 192.0.2.1 1000 143\r\n")
    c.starttls(ssl_context=_no_verify())
    assert c.login("bob@city.test", PASSWORD)[0] == "OK"
    c.logout()


@pytest.mark.slow
def test_a_trusted_source_without_a_header_is_dropped(proxied_server, caplog, monkeypatch):
    monkeypatch.setattr(proxylisten, "PROXY_HEADER_SECONDS", 0.5)
    for sent in (b"a1 CAPABILITY\r\n", b""):
        sock = socket.create_connection(("127.0.0.1", proxied_server.port), timeout=10)
        sock.sendall(sent)
        try:
            assert sock.recv(100) == b""  # closed, never greeted
        except ConnectionResetError:
            pass
        sock.close()
    dropped = [r.getMessage() for r in caplog.records if "dropped a connection" in r.getMessage()]
    assert len(dropped) == 2


def test_a_proxy_header_from_an_untrusted_source_is_bad(tmp_path):
    srv = ImapServer(tmp_path, proxy_trusted=["192.0.2.0/24"]).start()
    try:
        c = Raw(srv.port)
        assert c.greeting.startswith(b"* OK")
        c.send(V1)
        assert c.line().startswith(b"PROXY BAD")
        _, tagged = c.cmd(b"a1 NOOP")
        assert tagged.startswith(b"a1 OK")
    finally:
        srv.stop()


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx
