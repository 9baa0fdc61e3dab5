"""IMAP connection caps (in total, per client address, before login) and the pre-login deadlines, as a client sees them."""

from __future__ import annotations

import imaplib
import logging
import socket

import pytest

from mailserver.imap.server import address_key

from .harness import PASSWORD, ImapServer, wait_for


def _greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    return sock, sock.makefile("rb").readline()


@pytest.fixture
def capped(tmp_path, request):
    srv = ImapServer(tmp_path, limits=request.param).start()
    yield srv
    srv.stop()


def _refused(port: int) -> None:
    sock, greeting = _greeting(port)
    with sock:
        assert greeting.startswith(b"* BYE [UNAVAILABLE]"), greeting
        assert sock.recv(100) == b""  # and closed


@pytest.mark.parametrize("capped", [{"imap_connections": 3}], indirect=True)
def test_connections_in_total_are_capped(capped):
    held = [_greeting(capped.port) for _ in range(3)]
    assert all(g.startswith(b"* OK") for _, g in held)
    _refused(capped.port)
    held.pop()[0].close()
    wait_for(lambda: len(capped.service.connections) == 2, what="the slot given back")
    c = imaplib.IMAP4("127.0.0.1", capped.port)
    assert c.login("alice@city.test", PASSWORD)[0] == "OK"
    c.logout()
    for sock, _ in held:
        sock.close()


@pytest.mark.parametrize("capped", [{"imap_connections_per_address": 2}], indirect=True)
def test_connections_per_address_are_capped(capped, caplog):
    caplog.set_level(logging.WARNING, logger="postroom.imap")
    held = [_greeting(capped.port) for _ in range(2)]
    for _ in range(5):
        _refused(capped.port)
    for sock, _ in held:
        sock.close()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "connections from the address" in refusals[0].getMessage()  # not one per refusal


@pytest.mark.parametrize("capped", [{"imap_connections_before_login": 2}], indirect=True)
def test_connections_before_login_are_capped_and_login_frees_the_slot(capped):
    first = imaplib.IMAP4("127.0.0.1", capped.port)
    second = imaplib.IMAP4("127.0.0.1", capped.port)
    _refused(capped.port)  # two clients that have not logged in hold the server's pre-login slots
    first.login("alice@city.test", PASSWORD)
    third = imaplib.IMAP4("127.0.0.1", capped.port)  # logging in gave a slot back
    assert third.login("bob@city.test", PASSWORD)[0] == "OK"
    for c in (first, third):
        c.logout()
    second.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("capped", [{"imap_login_timeout": 1}], indirect=True)
def test_a_chatty_client_that_never_logs_in_is_cut_off(capped):
    """A trickle of commands (answered at once) does not keep a connection that never logs in."""
    sock, greeting = _greeting(capped.port)
    f = sock.makefile("rb")
    with sock:
        lines = []
        for n in range(100_000):
            try:
                sock.sendall(b"n%d NOOP\r\n" % n)
            except OSError:
                break
            line = f.readline()
            if not line or line.startswith(b"* BYE"):
                lines.append(line)
                break
        assert lines and lines[0].startswith(b"* BYE"), lines
        assert b"log in" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("capped", [{"imap_preauth_idle_timeout": 1}], indirect=True)
def test_a_silent_client_is_dropped_before_login(capped):
    sock, _ = _greeting(capped.port)
    with sock:
        assert sock.makefile("rb").readline().startswith(b"* BYE")


def test_defaults_are_documented_and_safe():
    from mailserver import config

    cfg = config.build({})
    assert 0 < cfg.get("limits", "imap_connections_before_login") <= cfg.get("limits", "imap_connections")
    assert 0 < cfg.get("limits", "imap_login_timeout") <= 120
    assert 0 < cfg.get("limits", "imap_preauth_idle_timeout") <= cfg.get("limits", "imap_login_timeout")


def test_ipv6_clients_are_counted_per_64():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")


@pytest.mark.parametrize("capped", [{"imap_connections_before_login": 2}], indirect=True)
def test_stalled_tls_handshakes_on_imaps_hold_pre_login_slots(capped):
    """Connections to the implicit-TLS port that never finish the handshake count before login too."""
    import ssl

    stalled = [socket.create_connection(("127.0.0.1", capped.tls_port), timeout=20) for _ in range(2)]
    wait_for(lambda: len(capped.service.before_login) == 2, what="both counted")
    _refused(capped.port)  # the plain port sees the cap as BYE
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", capped.tls_port), timeout=20) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # closed without a handshake
            ctx.wrap_socket(raw, server_hostname="localhost").recv(100)
    for sock in stalled:
        sock.close()
    wait_for(lambda: not capped.service.before_login, what="the slots given back")
    c = imaplib.IMAP4_SSL("127.0.0.1", capped.tls_port, ssl_context=ctx)
    assert c.login("alice@city.test", PASSWORD)[0] == "OK"
    c.logout()
