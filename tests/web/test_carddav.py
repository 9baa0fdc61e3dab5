"""The read-only CardDAV address book over real HTTP: discovery, PROPFIND, multiget, vCards, refusals."""

from __future__ import annotations

import base64

import vobject
from defusedxml import ElementTree as ET

from webmail.views.carddav import BOOK, HOME, MAX_BODY_BYTES, PRINCIPAL

from .harness import PASSWORD, Browser, WebServer
from .test_addressbook import org

D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:carddav}"
PROPS = (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">'
         b"<d:prop><d:current-user-principal/><card:addressbook-home-set/><d:resourcetype/><d:getetag/>"
         b"</d:prop></d:propfind>")


def auth(user: str = "alice", password: str = PASSWORD) -> dict[str, str]:
    """HTTP Basic credentials (RFC 7617), UTF-8."""
    token = base64.b64encode(f"{user}@city.test:{password}".encode()).decode()
    return {"Authorization": "Basic " + token}


async def dav(client, method: str, path: str, body: bytes = b"", *, depth: str = "0", user_auth=None,
              headers: dict[str, str] | None = None, **kw):
    """One WebDAV request with Basic credentials (`user_auth={}`: none); (response, body)."""
    async with client.session.request(method, client.base + path, data=body, allow_redirects=False,
                                      headers={"Depth": depth, "Content-Type": "application/xml",
                                               **(auth() if user_auth is None else user_auth), **(headers or {})},
                                      **kw) as r:
        return r, await r.read()


def responses(body: bytes) -> dict[str, dict[str, object]]:
    """{href: {property tag: element}} of the 200 propstats of a multistatus."""
    out = {}
    for resp in ET.fromstring(body).findall(D + "response"):
        props = {}
        for ps in resp.findall(D + "propstat"):
            if "200" in ps.find(D + "status").text:
                props.update({p.tag: p for p in ps.find(D + "prop")})
        out[resp.find(D + "href").text] = props
    return out


async def test_discovery_principal_home_and_the_organisation_book(web, client):
    await org(web)
    async with client.session.request("PROPFIND", client.base + "/.well-known/carddav", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/carddav/"  # RFC 6764 §5
    r, body = await dav(client, "PROPFIND", "/carddav/", PROPS)
    assert r.status == 207
    [(_, props)] = responses(body).items()
    assert props[D + "current-user-principal"].find(D + "href").text == PRINCIPAL
    assert props[C + "addressbook-home-set"].find(D + "href").text == HOME
    r, body = await dav(client, "PROPFIND", HOME, PROPS, depth="1")
    book = responses(body)[BOOK]
    assert book[D + "resourcetype"].find(C + "addressbook") is not None
    r, body = await dav(client, "PROPFIND", BOOK, PROPS, depth="1")
    cards = {h: p for h, p in responses(body).items() if h.endswith(".vcf")}
    assert sorted(cards) == [BOOK + "alice@city.test.vcf", BOOK + "bob@city.test.vcf",
                             BOOK + "wangfang@city.test.vcf", BOOK + "wangwei@city.test.vcf"]  # not gone@
    assert all(p[D + "getetag"].text.startswith('"') for p in cards.values())

    async with client.session.get(client.base + BOOK + "wangfang@city.test.vcf", headers=auth()) as r:
        assert r.status == 200 and r.content_type == "text/vcard"
        card = vobject.readOne(await r.text())
        assert r.headers["ETag"] == cards[BOOK + "wangfang@city.test.vcf"][D + "getetag"].text
    assert card.fn.value == "王芳" and card.email.value == "wangfang@city.test" and card.org.value == ["办公室"]


async def test_addressbook_multiget_returns_cards_and_404_for_the_rest(web, client):
    await org(web)
    body = (f'<card:addressbook-multiget xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">'
            f"<d:prop><d:getetag/><card:address-data/></d:prop>"
            f"<d:href>{BOOK}wangwei@city.test.vcf</d:href><d:href>{BOOK}gone@city.test.vcf</d:href>"
            f"</card:addressbook-multiget>").encode()
    r, out = await dav(client, "REPORT", BOOK, body, depth="1")
    assert r.status == 207
    found = responses(out)
    assert vobject.readOne(found[BOOK + "wangwei@city.test.vcf"][C + "address-data"].text).fn.value == "王伟"
    assert found[BOOK + "gone@city.test.vcf"] == {}  # disabled: 404
    assert "404" in out.decode()


async def test_refusals_auth_writes_bad_xml_and_bodies_too_large(web, client):
    async with client.session.request("PROPFIND", client.base + BOOK) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r, _ = await dav(client, "PROPFIND", BOOK, PROPS, user_auth=auth(password="wrong"))
    assert r.status == 401
    for method in ("PUT", "DELETE", "MKCOL", "PROPPATCH", "POST"):
        r, _ = await dav(client, method, BOOK + "x.vcf", b"BEGIN:VCARD")
        assert r.status == 403, method
    r, _ = await dav(client, "PROPFIND", BOOK, b'<!DOCTYPE x [<!ENTITY a "aaaa">]><d:propfind xmlns:d="DAV:">&a;'
                                                b"</d:propfind>")
    assert r.status == 400  # entities refused by defusedxml
    r, _ = await dav(client, "PROPFIND", BOOK, b"<not xml")
    assert r.status == 400
    r, _ = await dav(client, "PROPFIND", BOOK, b" " * (MAX_BODY_BYTES + 1))
    assert r.status == 413
    r, _ = await dav(client, "GET", BOOK + "nobody@city.test.vcf")
    assert r.status == 404
    r, body = await dav(client, "PROPFIND", "/carddav/", PROPS)  # still serving
    assert r.status == 207


async def test_failed_carddav_logins_share_the_sign_in_throttle(tmp_path):
    """The server's one authenticator: CardDAV failures throttle the web sign-in too (and CardDAV answers 429)."""
    srv = WebServer(tmp_path, limits={"auth_failures": 3}).start()
    b = Browser(srv.url)
    try:
        for _ in range(3):
            r, _ = await dav(b, "PROPFIND", BOOK, PROPS, user_auth=auth(password="wrong"))
            assert r.status == 401
        r, _ = await dav(b, "PROPFIND", BOOK, PROPS)  # the right password, now throttled
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
        r, _ = await b.sign_in()
        assert r.status == 429
    finally:
        await b.close()
        srv.stop()


async def test_with_two_step_sign_in_only_an_app_password_opens_the_book(web, client):
    """CardDAV cannot ask for a code: as over IMAP, the account's own password is refused, an app password works."""
    from .test_twofactor import _enrol

    await _enrol(web)
    r, _ = await dav(client, "PROPFIND", BOOK, PROPS)
    assert r.status == 401
    app = await web.loop_run(web.mb.directory.add_app_password("alice@city.test", "phone"))
    r, _ = await dav(client, "PROPFIND", BOOK, PROPS, user_auth=auth(password=app))
    assert r.status == 207
