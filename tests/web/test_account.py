"""Self-service over real HTTP: app passwords used by imaplib and smtplib then revoked, password change, CSRF, ids of others, client autoconfiguration."""

from __future__ import annotations

import imaplib
import plistlib
import re
import smtplib
import ssl
import xml.etree.ElementTree as ET

import aiohttp

from .harness import PASSWORD, Browser, csrf_of

_NEW_APP = re.compile(r'id="ap-new">([^<]+)<')
_REVOKE_IDS = re.compile(r'name="id" value="(\d+)"')
NEW_PASSWORD = "a-new-long-password"


def _imap_ok(port: int, user: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", port) as c:
        try:
            c.login(user, password)
        except imaplib.IMAP4.error:
            return False
        return True


def _smtp_ok(port: int, user: str, password: str) -> bool:
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo()
        try:
            c.login(user, password)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


async def _post_form(client: Browser, page_path: str, action: str, data: dict) -> tuple[aiohttp.ClientResponse, str]:
    _, page = await client.get(page_path)
    return await client.post(action, {"csrf": csrf_of(page), **data})


async def test_an_app_password_made_in_the_web_logs_in_imap_and_smtp_until_revoked(web, client):
    submission = web.smtp.addresses["submission"][1]
    await client.sign_in()
    r, page = await _post_form(client, "/settings/app-passwords", "/settings/app-passwords", {"label": "手机 Thunderbird"})
    assert r.status == 200
    [secret] = _NEW_APP.findall(page)
    assert "手机 Thunderbird" in page
    assert _imap_ok(web.port, "alice@city.test", secret) and _smtp_ok(submission, "alice@city.test", secret)
    # Listed with its last use; the secret is never shown again.
    _, page = await client.get("/settings/app-passwords")
    assert secret not in page and "手机 Thunderbird" in page and "UTC" in page
    [app_id] = _REVOKE_IDS.findall(page)
    # Bob cannot revoke Alice's app password by naming its id.
    bob = Browser(web.url)
    try:
        await bob.sign_in("bob@city.test")
        r, _ = await _post_form(bob, "/settings/app-passwords", "/settings/app-passwords/revoke", {"id": app_id})
        assert r.status == 404
        for junk in ("x", "-1", "9" * 40, "１"):
            r, _ = await _post_form(bob, "/settings/app-passwords", "/settings/app-passwords/revoke", {"id": junk})
            assert r.status == 404
    finally:
        await bob.close()
    assert _imap_ok(web.port, "alice@city.test", secret)
    r, _ = await _post_form(client, "/settings/app-passwords", "/settings/app-passwords/revoke", {"id": app_id})
    assert r.status == 200 and str(r.url).endswith("/settings/app-passwords")
    assert not _imap_ok(web.port, "alice@city.test", secret)
    assert not _smtp_ok(submission, "alice@city.test", secret)


async def test_changing_the_password_refuses_the_old_one_and_signs_out_other_sessions(web, client):
    other = Browser(web.url)
    try:
        await other.sign_in()
        await client.sign_in()
        # The current password must be right, and app passwords are not accepted as it.
        app = await web.loop_run(web.mb.directory.add_app_password("alice@city.test", "x"))
        for current in ("wrong", app):
            r, page = await _post_form(client, "/settings/password", "/settings/password",
                                       {"current": current, "new": NEW_PASSWORD, "again": NEW_PASSWORD})
            assert r.status == 400 and 'role="alert"' in page
        r, _ = await _post_form(client, "/settings/password", "/settings/password",
                                {"current": PASSWORD, "new": "short", "again": "short"})
        assert r.status == 400
        r, page = await _post_form(client, "/settings/password", "/settings/password",
                                   {"current": PASSWORD, "new": NEW_PASSWORD, "again": NEW_PASSWORD})
        assert r.status == 200 and 'id="pw-done"' in page
        # This browser stays signed in (a new session); the other one is signed out.
        r, _ = await client.get("/mail", allow_redirects=False)
        assert r.status == 200
        r, _ = await other.get("/mail", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"
        assert not _imap_ok(web.port, "alice@city.test", PASSWORD)
        assert _imap_ok(web.port, "alice@city.test", NEW_PASSWORD)
        r, _ = await Browser.sign_in(other, password=PASSWORD)
        assert r.status == 401
    finally:
        await other.close()


async def test_every_new_post_is_refused_without_the_csrf_token(web, client):
    await client.sign_in()
    app = await web.loop_run(web.mb.directory.add_app_password("alice@city.test", "keep"))
    app_id = app.split("-", 1)[0]
    posts = {
        "/settings/password": {"current": PASSWORD, "new": NEW_PASSWORD, "again": NEW_PASSWORD},
        "/settings/app-passwords": {"label": "evil"},
        "/settings/app-passwords/revoke": {"id": app_id},
        "/settings/two-factor/begin": {},
        "/settings/two-factor/confirm": {"code": "123456"},
        "/settings/two-factor/disable": {"proof": PASSWORD},
        "/settings/two-factor/recovery": {"code": "123456"},
        "/login/code": {"code": "123456"},
    }
    for path, data in posts.items():
        for token in (None, "forged"):
            r, _ = await client.post(path, data if token is None else {"csrf": token, **data})
            assert r.status == 403, path
    assert _imap_ok(web.port, "alice@city.test", PASSWORD) and _imap_ok(web.port, "alice@city.test", app)
    assert len(await web.loop_run(web.mb.directory.list_app_passwords("alice@city.test"))) == 1


def _expected(web) -> dict[tuple[str, str], int]:
    return {("imap", "SSL"): web.tls_port, ("imap", "STARTTLS"): web.port,
            ("smtp", "STARTTLS"): web.smtp.addresses["submission"][1]}


async def test_thunderbird_autoconfig_names_the_running_listeners_and_imaplib_connects_with_it(web, client):
    for path in ("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40city.test",
                 "/mail/config-v1.1.xml?emailaddress=alice%40city.test"):
        r, body = await client.get(path)
        assert r.status == 200 and r.content_type == "application/xml"
        # Any address in a local domain gets the same answer: existence is not revealed.
        _, same = await client.get(path.replace("alice", "nobody-here"))
        assert same == body
        root = ET.fromstring(body.encode())
        provider = root.find("emailProvider")
        assert [d.text for d in provider.findall("domain")] == ["city.test"]
        got = {}
        for server in provider.findall("incomingServer") + provider.findall("outgoingServer"):
            assert server.findtext("hostname") == "localhost"
            assert server.findtext("username") == "%EMAILADDRESS%"
            got[(server.get("type"), server.findtext("socketType"))] = int(server.findtext("port"))
        assert got == _expected(web)
    r, _ = await client.get("/mail/config-v1.1.xml?emailaddress=someone%40elsewhere.test")
    assert r.status == 404
    # A client follows the answer: the first incoming server, its host, port and TLS, the address as user.
    first = provider.find("incomingServer")
    assert first.findtext("socketType") == "SSL"
    ctx = ssl.create_default_context(cafile=str(web.cert))  # the server's own certificate, host name checked
    with imaplib.IMAP4_SSL(first.findtext("hostname"), int(first.findtext("port")), ssl_context=ctx) as c:
        typ, _ = c.login("alice@city.test", PASSWORD)
        assert typ == "OK"


AD_REQUEST = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{address}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""
AD = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
ADO = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


async def test_outlook_autodiscover_answers_from_the_listeners_without_a_csrf_token(web):
    async with aiohttp.ClientSession() as s:
        for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
            async with s.post(web.url + path, data=AD_REQUEST.format(address="Alice@City.test"),
                              headers={"Content-Type": "text/xml"}) as r:
                assert r.status == 200
                root = ET.fromstring(await r.read())
            account = root.find(f"{ADO}Response/{ADO}Account")
            assert account.findtext(f"{ADO}Action") == "settings"
            protos = {p.findtext(f"{ADO}Type"): p for p in account.findall(f"{ADO}Protocol")}
            assert set(protos) == {"IMAP", "SMTP"}
            assert int(protos["IMAP"].findtext(f"{ADO}Port")) == web.tls_port
            assert protos["IMAP"].findtext(f"{ADO}Encryption") == "SSL"
            assert int(protos["SMTP"].findtext(f"{ADO}Port")) == web.smtp.addresses["submission"][1]
            assert protos["SMTP"].findtext(f"{ADO}Encryption") == "TLS"
            assert {p.findtext(f"{ADO}Server") for p in protos.values()} == {"localhost"}
            assert {p.findtext(f"{ADO}LoginName") for p in protos.values()} == {"alice@city.test"}
        # Elsewhere, garbage and entity tricks get an error answer; the server keeps serving.
        bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "x">]><a>&b;</a>'
        for body in (AD_REQUEST.format(address="x@elsewhere.test"), "not xml", bomb, "<a>" * 5000):
            async with s.post(web.url + "/autodiscover/autodiscover.xml", data=body) as r:
                assert r.status == 200
                root = ET.fromstring(await r.read())
                assert root.findtext(f"{AD}Response/{AD}Error/{AD}ErrorCode") == "600"


async def test_the_apple_profile_is_a_plist_with_the_listeners(web, client):
    r, _ = await client.get("/settings/mail-client/postroom.mobileconfig", allow_redirects=False)
    assert r.status == 303  # signed-in users only
    await client.sign_in()
    r, page = await client.get("/settings/mail-client")
    assert r.status == 200 and f">{web.tls_port}<" in page and "localhost" in page
    r, body = await client.download("/settings/mail-client/postroom.mobileconfig")
    assert r.status == 200 and r.content_type == "application/x-apple-aspen-config"
    assert "attachment" in r.headers["Content-Disposition"]
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration"
    [mail] = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed" and mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["EmailAddress"] == mail["IncomingMailServerUsername"] == "alice@city.test"
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == ("localhost", web.tls_port)
    assert (mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"]) == (
        web.smtp.addresses["submission"][1], True)
    assert not {"IncomingPassword", "OutgoingPassword"} & set(mail)  # no password inside: the device asks


async def test_behind_nat_client_setup_names_the_public_host_and_ports_of_the_clients_section(tmp_path):
    """[clients] hostname/*_port: what autoconfig, the profile and the set-up page tell clients, not the bound ports."""
    from .harness import WebServer

    srv = WebServer(tmp_path)
    srv.config.values["clients"].update(hostname="mail.city.test", imaps_port=993, imap_port=143,
                                        submission_port=587)
    srv.start()
    client = Browser(srv.url)
    try:
        _, body = await client.get("/mail/config-v1.1.xml?emailaddress=alice%40city.test")
        provider = ET.fromstring(body.encode()).find("emailProvider")
        got = {(s.get("type"), s.findtext("socketType")): (s.findtext("hostname"), int(s.findtext("port")))
               for s in provider.findall("incomingServer") + provider.findall("outgoingServer")}
        assert got == {("imap", "SSL"): ("mail.city.test", 993), ("imap", "STARTTLS"): ("mail.city.test", 143),
                       ("smtp", "STARTTLS"): ("mail.city.test", 587)}
        await client.sign_in()
        _, page = await client.get("/settings/mail-client")
        assert ">993<" in page and "mail.city.test" in page and f">{srv.tls_port}<" not in page
        _, raw = await client.download("/settings/mail-client/postroom.mobileconfig")
        [mail] = plistlib.loads(raw)["PayloadContent"]
        assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == ("mail.city.test", 993)
        assert mail["OutgoingMailServerPortNumber"] == 587
    finally:
        await client.close()
        srv.stop()
