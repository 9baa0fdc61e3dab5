"""Connection-level behaviour with imaplib: greeting, CAPABILITY, LOGIN/AUTHENTICATE, STARTTLS, IMAPS, throttling, limits."""

from __future__ import annotations

import imaplib
import socket
import ssl

import pytest

from .harness import PASSWORD, ImapServer, Raw, message, wait_for


def tls_client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_greeting_capability_noop_logout(server):
    c = imaplib.IMAP4("127.0.0.1", server.port)
    assert "IMAP4REV1" in c.capabilities and "IDLE" in c.capabilities and "STARTTLS" in c.capabilities
    assert "AUTH=PLAIN" in c.capabilities and "LOGINDISABLED" not in c.capabilities  # loopback allowed here
    assert c.noop()[0] == "OK"
    typ, data = c.login("alice@city.test", PASSWORD)
    assert typ == "OK" and b"CAPABILITY" in data[0] and b"QRESYNC" in data[0]
    typ, data = c.capability()
    caps = data[0].split()
    for cap in (b"UIDPLUS", b"MOVE", b"NAMESPACE", b"ID", b"ENABLE", b"UNSELECT", b"CHILDREN", b"SPECIAL-USE",
                b"LITERAL+", b"CONDSTORE", b"QRESYNC", b"QUOTA", b"ACL", b"UTF8=ACCEPT", b"ESEARCH"):
        assert cap in caps
    assert c.logout()[0] == "BYE"


def test_login_failure_and_wrong_state(server):
    c = Raw(server.port)
    assert c.cmd(b"a LOGIN alice@city.test wrong")[1].startswith(b"a NO [AUTHENTICATIONFAILED]")
    # commands of a later state are refused, nothing changes and the connection stays up
    assert c.cmd(b"b SELECT INBOX")[1].startswith(b"b BAD")
    assert c.cmd(b"c LOGIN alice@city.test " + PASSWORD.encode())[1].startswith(b"c OK")
    assert c.cmd(b"d FETCH 1 FLAGS")[1].startswith(b"d BAD")  # no mailbox selected
    assert c.cmd(b"e LOGIN alice@city.test " + PASSWORD.encode())[1].startswith(b"e BAD")  # already in
    assert c.cmd(b"f SELECT INBOX")[1].startswith(b"f OK [READ-WRITE]")
    assert c.cmd(b"g ENABLE CONDSTORE")[1].startswith(b"g BAD")  # RFC 5161: not once selected
    c.close()


def test_authenticate_plain_with_and_without_initial_response(server):
    server.deliver("bob", message("for bob"))  # so that bob's session can be told from alice's
    c = imaplib.IMAP4("127.0.0.1", server.port)
    # imaplib sends the response after "+" (no SASL-IR)
    typ, _ = c.authenticate("PLAIN", lambda _: b"\0alice@city.test\0" + PASSWORD.encode())
    assert typ == "OK" and c.state == "AUTH"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", server.port)
    import base64

    ir = base64.b64encode(b"\0bob@city.test\0" + PASSWORD.encode()).decode()
    typ, _ = c._simple_command("AUTHENTICATE", "PLAIN", ir)  # RFC 4959 SASL-IR
    assert typ == "OK"
    c.state = "AUTH"  # imaplib does not follow a raw AUTHENTICATE
    typ, data = c._simple_command("STATUS", "INBOX", "(MESSAGES)")  # the session is bob's
    assert c._untagged_response(typ, data, "STATUS")[1] == [b"INBOX (MESSAGES 1)"]
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", server.port)
    with pytest.raises(imaplib.IMAP4.error):
        c.authenticate("PLAIN", lambda _: b"bob@city.test\0alice@city.test\0" + PASSWORD.encode())  # proxy login
    c.logout()


def test_login_refused_before_tls_unless_loopback_allowed(tmp_path):
    srv = ImapServer(tmp_path, plaintext_on_loopback=False).start()
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port)
        assert "LOGINDISABLED" in c.capabilities and "AUTH=PLAIN" not in c.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            c.login("alice@city.test", PASSWORD)
        c.starttls(tls_client_context())
        assert "LOGINDISABLED" not in c.capabilities and "STARTTLS" not in c.capabilities
        assert c.login("alice@city.test", PASSWORD)[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
        c.logout()
        s = imaplib.IMAP4_SSL("127.0.0.1", srv.tls_port, ssl_context=tls_client_context())
        assert "AUTH=PLAIN" in s.capabilities
        assert s.login("bob@city.test", PASSWORD)[0] == "OK"
        s.logout()
    finally:
        srv.stop()


def test_failed_logins_are_throttled(tmp_path):
    srv = ImapServer(tmp_path, limits={"auth_failures": 3}).start()
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port)
        for _ in range(3):
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                c.login("alice@city.test", "bad")
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            c.login("alice@city.test", PASSWORD)  # even the right password waits now
        c.logout()
    finally:
        srv.stop()


def test_connections_per_account_are_bounded(tmp_path):
    srv = ImapServer(tmp_path, limits={"imap_connections_per_account": 2}).start()
    try:
        held = [imaplib.IMAP4("127.0.0.1", srv.port) for _ in range(2)]
        for c in held:
            c.login("alice@city.test", PASSWORD)
        extra = imaplib.IMAP4("127.0.0.1", srv.port)
        with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
            extra.login("alice@city.test", PASSWORD)
        assert extra.login("bob@city.test", PASSWORD)[0] == "OK"  # other accounts are not affected
        held.pop().logout()
        again = imaplib.IMAP4("127.0.0.1", srv.port)
        assert again.login("alice@city.test", PASSWORD)[0] == "OK"  # the slot was given back
        for c in (again, extra, *held):
            c.logout()
    finally:
        srv.stop()


def test_id_namespace_enable(imap):
    typ, data = imap.xatom("ID", '("name" "pytest" "version" "1")')
    assert typ == "OK"
    assert b'"name" "Postroom"' in imap.untagged_responses.pop("ID")[0]
    typ, data = imap.namespace()
    assert data == [b'(("" "/")) (("Shared/" "/")) NIL']
    typ, data = imap.xatom("ENABLE", "QRESYNC UTF8=ACCEPT X-UNKNOWN")
    assert typ == "OK" and imap.untagged_responses.pop("ENABLED") == [b"QRESYNC UTF8=ACCEPT"]


@pytest.mark.slow
def test_idle_timeout_logs_the_client_out(tmp_path):
    srv = ImapServer(tmp_path, limits={"imap_idle_timeout": 1}).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"* OK")
            s.sendall(b"a LOGIN alice@city.test " + PASSWORD.encode() + b"\r\nb SELECT INBOX\r\nc IDLE\r\n")
            lines = []
            while not lines or not lines[-1].startswith(b"* BYE"):
                line = f.readline()
                assert line, "connection closed without BYE"
                lines.append(line)
            assert b"+ idling\r\n" in lines  # the timeout applies inside IDLE too (RFC 2177)
            assert f.readline() == b""  # then the server closes
    finally:
        srv.stop()


def test_server_shutdown_says_bye(tmp_path):
    srv = ImapServer(tmp_path).start()
    waiting = Raw(srv.port, login="alice@city.test")
    idling = Raw(srv.port, login="alice@city.test")
    idling.cmd(b"s SELECT INBOX")
    idling.send(b"i IDLE\r\n")
    assert idling.line() == b"+ idling\r\n"
    srv.stop()  # RFC 3501 §7.1.5: BYE, whether waiting for a command or idling
    for c in (waiting, idling):
        assert c.line().startswith(b"* BYE Server shutting down")
        assert c.line() == b""
        c.close()


def test_a_session_on_each_backend(storage_url, tmp_path):
    """The same server on SQLite and on a real PostgreSQL: append, select, fetch, store, search, expunge."""
    srv = ImapServer(tmp_path, storage_url=storage_url).start()
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port)
        c.login("alice@city.test", PASSWORD)
        typ, data = c.append("INBOX", "(\\Flagged)", None, b"Subject: backend\r\n\r\n\xe6\xb5\x8b\xe8\xaf\x95 body\r\n")
        assert typ == "OK" and b"APPENDUID" in data[0]
        assert c.select("INBOX") == ("OK", [b"1"])
        c.literal = "测试".encode()  # imaplib sends it as a literal after the last argument
        assert c.search("UTF-8", "BODY") == ("OK", [b"1"])
        assert c.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert c.expunge() == ("OK", [b"1"])
        c.logout()
    finally:
        srv.stop()


def test_app_passwords_work_and_disabled_accounts_do_not(server):
    """The same credentials as SMTP (design.md: address and password, or an app password)."""
    app_pw = server.run(server.mb.directory.add_app_password("alice@city.test", "phone"))
    c = imaplib.IMAP4("127.0.0.1", server.port)
    assert c.login("Alice@City.test", app_pw)[0] == "OK"  # addresses are case-insensitive
    c.logout()
    server.run(server.mb.directory.set_enabled("bob@city.test", False))
    c = imaplib.IMAP4("127.0.0.1", server.port)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login("bob@city.test", PASSWORD)
    c.logout()


def test_id_with_spaces_inside_the_list_as_aioimaplib_writes_it(server):
    c = Raw(server.port)
    untagged, tagged = c.cmd(b'a ID ( "name" "aioimaplib" "version" NIL )')
    assert tagged.startswith(b"a OK") and untagged[0].startswith(b'* ID ("name" "Postroom"')
    assert c.cmd(b'b ID ("name""x")')[1].startswith(b"b BAD")  # but the pairs still need their space
    c.close()


def _session_line(record) -> bool:
    return record.name == "postroom.imap" and record.getMessage().startswith("imap session=")


def test_one_log_line_per_session_and_no_secret(server, caplog):
    caplog.set_level("INFO", logger="postroom")
    c = imaplib.IMAP4("127.0.0.1", server.port)
    c.login("alice@city.test", PASSWORD)
    c.xatom("ID", '("name" "Thunderbird" "version" "128.0")')
    c.select("INBOX")
    c.logout()
    # The session's own line (postroom.imap): on a busy machine the watchdog may also log a stall that names it.
    wait_for(lambda: any(_session_line(r) for r in caplog.records), what="the session log line")
    lines = [r.getMessage() for r in caplog.records if _session_line(r)]
    assert len(lines) == 1
    assert "user=alice@city.test" in lines[0] and "client='Thunderbird 128.0'" in lines[0] and "end=logout" in lines[0]
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)
