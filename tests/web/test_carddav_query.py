"""CardDAV over real HTTP, beyond listing: addressbook-query, vCard 4.0, ETags and sync tokens that follow the directory, HTTPS for Basic."""

from __future__ import annotations

import vobject
from defusedxml import ElementTree as ET
from sqlalchemy import update

from mailboxes import schema as t
from mailserver.config import Config
from webmail.views.carddav import BOOK, MAX_QUERY_RESULTS, PLAIN_HTTP_REFUSED

from .harness import Browser, WebServer
from .test_addressbook import org
from .test_carddav import C, D, auth, dav, responses

QUERY = ('<card:addressbook-query xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">'
         "<d:prop><d:getetag/>{data}</d:prop>{filter}{limit}</card:addressbook-query>")


def query(filter_xml: str, *, data: str = "<card:address-data/>", limit: str = "") -> bytes:
    return QUERY.format(data=data, filter=filter_xml, limit=limit).encode()


def text_match(prop: str, text: str, match_type: str = "contains", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return (f'<card:prop-filter name="{prop}"><card:text-match match-type="{match_type}"{extra}>{text}'
            f"</card:text-match></card:prop-filter>")


def cards(body: bytes) -> dict[str, dict]:
    return {h: p for h, p in responses(body).items() if h.endswith(".vcf")}


async def test_query_by_name_and_email_with_every_match_type(web, client):
    await org(web)
    for filter_xml, expected in (
        (f"<card:filter>{text_match('FN', '王')}</card:filter>", ["wangfang", "wangwei"]),  # not the disabled one
        (f"<card:filter>{text_match('EMAIL', 'WANGF', 'starts-with')}</card:filter>", ["wangfang"]),
        (f"<card:filter>{text_match('EMAIL', 'bob@city.test', 'equals')}</card:filter>", ["bob"]),
        (f"<card:filter>{text_match('FN', '伟', 'ends-with')}</card:filter>", ["wangwei"]),
        (f"<card:filter>{text_match('EMAIL', 'wang', negate_condition='yes')}</card:filter>", ["alice", "bob"]),
        (f'<card:filter test="allof">{text_match("FN", "王")}{text_match("EMAIL", "wei")}</card:filter>',
         ["wangwei"]),
        (f"<card:filter>{text_match('FN', '芳')}{text_match('EMAIL', 'alice')}</card:filter>", ["alice", "wangfang"]),
        ('<card:filter><card:prop-filter name="ORG"><card:is-not-defined/></card:prop-filter></card:filter>',
         ["alice", "bob"]),
        ('<card:filter><card:prop-filter name="ORG"/></card:filter>', ["wangfang", "wangwei"]),
        (f"<card:filter>{text_match('EMAIL', 'ALICE', collation='i;octet')}</card:filter>", []),
        ("", ["alice", "bob", "wangfang", "wangwei"]),  # no filter: every card
    ):
        r, body = await dav(client, "REPORT", BOOK, query(filter_xml), depth="1")
        assert r.status == 207, (filter_xml, body)
        found = cards(body)
        assert sorted(h[len(BOOK):].split("@")[0] for h in found) == expected, filter_xml
        for props in found.values():
            card = vobject.readOne(props[C + "address-data"].text)
            assert card.version.value == "3.0" and props[D + "getetag"].text.startswith('"')


async def test_query_results_are_limited_with_a_507_for_the_book(web, client):
    await org(web)
    r, body = await dav(client, "REPORT", BOOK, query(f"<card:filter>{text_match('EMAIL', 'city')}</card:filter>",
                                                      limit="<card:limit><card:nresults>2</card:nresults></card:limit>"))
    assert r.status == 207
    found = cards(body)
    assert sorted(found) == [BOOK + "alice@city.test.vcf", BOOK + "bob@city.test.vcf"]  # by address
    [book] = [resp for resp in ET.fromstring(body).findall(D + "response") if resp.findtext(D + "href") == BOOK]
    assert book.findtext(D + "status") == "HTTP/1.1 507 Insufficient Storage"  # RFC 6352 §8.6.1
    assert book.find(f"{D}error/{D}number-of-matches-within-limits") is not None

    async def many():
        for i in range(MAX_QUERY_RESULTS + 5):
            await web.mb.directory.add_account(f"z{i:04}@city.test", password=None, display_name=f"张{i:04}")
    await web.loop_run(many())
    r, body = await dav(client, "REPORT", BOOK, query(f"<card:filter>{text_match('FN', '张')}</card:filter>",
                                                      data="", limit="<card:limit><card:nresults>100000</card:nresults>"
                                                      "</card:limit>"))
    assert len(cards(body)) == MAX_QUERY_RESULTS and b"507 Insufficient Storage" in body


async def test_query_refusals_name_the_precondition(web, client):
    for filter_xml, condition in (
        (f"<card:filter>{text_match('FN', 'x', collation='i;klingon')}</card:filter>", "supported-collation"),
        ('<card:filter><card:prop-filter name="EMAIL"><card:param-filter name="TYPE"/></card:prop-filter>'
         "</card:filter>", "supported-filter"),
        (f"<card:filter>{text_match('FN', 'x', 'regex')}</card:filter>", "supported-filter"),
        (f"<card:filter>{text_match('FN', 'x' * 300)}</card:filter>", "supported-filter"),
        ("<card:filter>" + text_match("FN", "x") * 17 + "</card:filter>", "supported-filter"),
    ):
        r, body = await dav(client, "REPORT", BOOK, query(filter_xml))
        assert r.status == 403, filter_xml
        root = ET.fromstring(body)
        assert root.tag == D + "error" and root.find(C + condition) is not None, body
    r, body = await dav(client, "REPORT", BOOK, query("", limit="<card:limit><card:nresults>x</card:nresults>"
                                                      "</card:limit>"))
    assert r.status == 400
    r, body = await dav(client, "REPORT", BOOK, b'<d:expand-property xmlns:d="DAV:"/>')
    assert r.status == 403


async def test_vcard_4_when_the_client_asks_for_it_else_3(web, client):
    await org(web)
    href = BOOK + "wangfang@city.test.vcf"
    for accept, version in ((None, "3.0"), ("text/vcard", "3.0"), ("text/vcard; version=4.0", "4.0"),
                            ("text/vcard;version=3.0, text/vcard;version=4.0;q=0.5", "3.0"),
                            ('text/vcard;version="4.0";q=0.9, text/vcard;version=3.0;q=0.8', "4.0"),
                            ("text/vcard;version=4.0;q=0", "3.0")):
        headers = {**auth(), **({"Accept": accept} if accept else {})}
        async with client.session.get(client.base + href, headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Type"].endswith(f"version={version}"), accept
            card = vobject.readOne(await r.text())
            etag = r.headers["ETag"]
        assert card.version.value == version and card.fn.value == "王芳", accept
        assert card.email.params["TYPE"] == (["work"] if version == "4.0" else ["INTERNET"])
    async with client.session.get(client.base + href, headers={**auth(), "If-None-Match": etag}) as r:
        assert r.status == 304 and r.headers["ETag"] == etag  # same ETag for both versions
    multiget = (f'<card:addressbook-multiget xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav"><d:prop>'
                f'<card:address-data content-type="text/vcard" version="4.0"/></d:prop><d:href>{href}</d:href>'
                f"</card:addressbook-multiget>").encode()
    r, body = await dav(client, "REPORT", BOOK, multiget)
    assert vobject.readOne(responses(body)[href][C + "address-data"].text).version.value == "4.0"
    assert b"\r\n" in body or b"&#13;" in body  # the card's CRLF line ends survive the XML
    r, body = await dav(client, "REPORT", BOOK, query(text_match("FN", "芳").join(("<card:filter>", "</card:filter>")),
                                                      data='<card:address-data version="4.0"/>'))
    assert vobject.readOne(cards(body)[href][C + "address-data"].text).kind.value == "individual"
    r, body = await dav(client, "PROPFIND", BOOK, b'<d:propfind xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:'
                                                  b'carddav"><d:prop><card:supported-address-data/></d:prop>'
                                                  b"</d:propfind>")
    types = responses(body)[BOOK][C + "supported-address-data"]
    assert sorted(e.get("version") for e in types) == ["3.0", "4.0"]


async def _state(client, href: str) -> tuple[str, str, str]:
    """(the card's getetag, the book's getctag, the book's sync-token)."""
    r, body = await dav(client, "PROPFIND", BOOK, b'<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/'
                                                  b'ns/"><d:prop><d:getetag/><cs:getctag/><d:sync-token/></d:prop>'
                                                  b"</d:propfind>", depth="1")
    found = responses(body)
    book = found[BOOK]
    return (found[href][D + "getetag"].text, book["{http://calendarserver.org/ns/}getctag"].text,
            book[D + "sync-token"].text)


async def test_etag_ctag_and_sync_token_follow_directory_changes(web, client):
    await org(web)
    href = BOOK + "wangfang@city.test.vcf"
    first = await _state(client, href)
    assert await _state(client, href) == first  # stable while nothing changes

    async def rename():  # what an administrator's edit of the entry writes
        async with web.mb.router.central.write() as conn:
            await conn.execute(update(t.accounts).where(t.accounts.c.address == "wangfang@city.test")
                               .values(display_name="王芳芳"))
    await web.loop_run(rename())
    renamed = await _state(client, href)
    assert all(a != b for a, b in zip(first, renamed))
    async with client.session.get(client.base + href, headers={**auth(), "If-None-Match": first[0]}) as r:
        assert r.status == 200 and vobject.readOne(await r.text()).fn.value == "王芳芳"
    await web.loop_run(web.add_account("newcomer", display_name="新同事"))
    added = await _state(client, href)
    assert added[0] == renamed[0] and added[1] != renamed[1] and added[2] != renamed[2]  # others' etags stay
    await web.loop_run(web.mb.directory.set_enabled("newcomer@city.test", False))
    assert await _state(client, href) == renamed  # gone again: the book is as it was

    sync = ('<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level>'
            "<d:prop><d:getetag/></d:prop></d:sync-collection>")
    r, body = await dav(client, "REPORT", BOOK, sync.format("").encode())  # RFC 6578 §3.2: initial sync
    assert r.status == 207 and len(cards(body)) == 4 and ET.fromstring(body).findtext(D + "sync-token") == renamed[2]
    r, body = await dav(client, "REPORT", BOOK, sync.format(renamed[2]).encode())
    assert r.status == 207 and cards(body) == {} and ET.fromstring(body).findtext(D + "sync-token") == renamed[2]
    r, body = await dav(client, "REPORT", BOOK, sync.format(first[2]).encode())  # an old token: sync afresh
    assert r.status == 403 and ET.fromstring(body).find(D + "valid-sync-token") is not None


async def test_exact_multistatus_bytes_with_a_foreign_namespace(web, client):
    """The streamed body is one document: every prefix declared once on the root, unknown properties 404."""
    r, body = await dav(client, "PROPFIND", "/carddav/principal/",
                        b'<d:propfind xmlns:d="DAV:" xmlns:a="http://apple.com/ns/ical/"><d:prop><d:displayname/>'
                        b"<a:calendar-color/><d:resourcetype/></d:prop></d:propfind>")
    assert r.status == 207 and r.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert body.decode() == (
        '<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:" '
        'xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:cs="http://calendarserver.org/ns/" '
        'xmlns:x0="http://apple.com/ns/ical/"><d:response><d:href>/carddav/principal/</d:href><d:propstat><d:prop>'
        "<d:displayname>alice@city.test</d:displayname><d:resourcetype><d:principal/></d:resourcetype></d:prop>"
        "<d:status>HTTP/1.1 200 OK</d:status></d:propstat><d:propstat><d:prop><x0:calendar-color/></d:prop>"
        "<d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response></d:multistatus>")


def _behind_proxy(tmp_path, trusted: list[str]) -> WebServer:
    srv = WebServer(tmp_path, https=True)
    values = {section: dict(keys) for section, keys in srv.config.values.items()}
    values["listen"]["http_forwarded_trusted"] = trusted
    srv.config = Config(srv.config.path, values)
    return srv.start()


async def test_basic_over_plain_http_is_refused_unless_the_client_is_on_loopback(tmp_path):
    """Behind a trusted proxy the client's own address and scheme decide (RFC 7239); loopback and TLS are served."""
    srv = _behind_proxy(tmp_path, ["127.0.0.0/8"])
    b, tls = Browser(srv.url), Browser(srv.https_url)
    props = b'<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
    try:
        r, _ = await dav(b, "PROPFIND", BOOK, props)  # the proxy's own request: loopback, no header
        assert r.status == 207
        for forwarded in ("for=203.0.113.7;proto=http", 'for="[2001:db8::7]:4711";proto=http',
                          "for=127.0.0.1;proto=http, for=203.0.113.7;proto=http",  # only the proxy's element counts
                          "for=unknown;proto=http", "proto=http"):
            for user_auth in (auth(), auth(password="wrong"), {}):
                r, body = await dav(b, "PROPFIND", BOOK, props, user_auth=user_auth, headers={"Forwarded": forwarded})
                assert r.status == 403 and body.decode() == PLAIN_HTTP_REFUSED, forwarded
                assert "WWW-Authenticate" not in r.headers
        r, _ = await dav(b, "PROPFIND", BOOK, props, headers={"Forwarded": "for=203.0.113.7;proto=https"})
        assert r.status == 207  # TLS ended at the proxy
        r, _ = await dav(b, "PROPFIND", BOOK, props, headers={"Forwarded": "for=127.0.0.1;proto=http"})
        assert r.status == 207  # a client on the proxy's own host
        r, _ = await dav(tls, "PROPFIND", BOOK, props, headers={"Forwarded": "for=203.0.113.7;proto=https"})
        assert r.status == 207
        # The web pages see the same: proto=https makes cookies Secure and __Host- prefixed, and adds HSTS.
        r, _ = await b.get("/login", headers={"Forwarded": "for=203.0.113.7;proto=https"})
        cookie = r.headers.getone("Set-Cookie")
        assert cookie.startswith("__Host-postroom-pre=") and "secure" in cookie.lower()
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        r, _ = await b.get("/login", headers={"Forwarded": "for=203.0.113.7;proto=http"})
        assert "Strict-Transport-Security" not in r.headers
    finally:
        await b.close()
        await tls.close()
        srv.stop()


async def test_forwarded_is_ignored_from_untrusted_peers(web, client):
    """Without http_forwarded_trusted the header is the client's own word: a loopback client stays loopback."""
    props = b'<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
    r, _ = await dav(client, "PROPFIND", BOOK, props, headers={"Forwarded": "for=203.0.113.7;proto=http"})
    assert r.status == 207
