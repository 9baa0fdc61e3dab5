"""The organisation address book served read-only over CardDAV (RFC 6352), found by RFC 6764 discovery.

Implementation notes
- Resources: the principal /carddav/principal/ (RFC 5397 current-user-principal), the
  address-book home /carddav/books/ (RFC 6352 §7.1.1) holding one address book,
  /carddav/books/organisation/, whose members are one vCard per enabled person.
- Authentication is HTTP Basic (RFC 7617) through the server's one authenticator
  (the same hashes, cache and throttle as IMAP and the sign-in page); cookies are
  never used here, so the CSRF middleware lets these paths through (nothing here
  changes state: every write method gets 403). A client cannot type a second-factor
  code, so accounts with two-step sign-in must use an app password here, as over IMAP.
- Basic sends the password in the clear: over plain HTTP only a loopback client is
  served (RFC 6352 §13 asks for TLS); anyone else gets 403 before any credential is
  read. Behind a reverse proxy the client's address and scheme come from the proxy's
  Forwarded header ([listen] http_forwarded_trusted, webmail/forwarded.py).
- Client XML is parsed with defusedxml (no entities, no external DTDs) from a body
  of at most MAX_BODY_BYTES; a multiget names at most MAX_MULTIGET hrefs; a query
  answers at most MAX_QUERY_RESULTS cards (RFC 6352 §8.6.1: then a 507 for the book).
- Every multistatus is streamed (davxml.stream): members are written CHUNK_CARDS at a
  time, each chunk built in a thread, so a 10,000-card listing never sits whole in
  memory and never holds the loop. The people themselves are a list of at most
  mailboxes.addressbook.MAX_CARDS.
- sync-collection (RFC 6578) without history: an empty token gets every card, the
  current token gets nothing new, any other token 403 valid-sync-token (the client
  then syncs afresh, §3.2).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from urllib.parse import quote, unquote
from xml.etree import ElementTree as ET

from aiohttp import web
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from mailboxes.addressbook import MAX_RESULTS, Person

from .. import vcards
from ..context import WEBMAIL, SignInRefused
from ..davxml import CARD, CS, DAV, error_body, q, stream
from ..forwarded import is_loopback

PREFIX = "/carddav/"
PRINCIPAL = "/carddav/principal/"
HOME = "/carddav/books/"
BOOK = "/carddav/books/organisation/"
MAX_BODY_BYTES = 64 * 1024  # a PROPFIND or REPORT body larger than this gets 413
MAX_MULTIGET = MAX_RESULTS  # hrefs answered per addressbook-multiget
MAX_QUERY_RESULTS = 200  # cards answered per addressbook-query at most (a client's nresults may lower it)
MAX_CREDENTIAL_CHARS = 1024  # a longer Authorization header is refused without decoding
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"})
REPORTS = (q(CARD, "addressbook-query"), q(CARD, "addressbook-multiget"), q(DAV, "sync-collection"))
PLAIN_HTTP_REFUSED = ("CardDAV needs HTTPS: this server does not take passwords over plain HTTP from another "
                      "host. Use the https:// address of the webmail (…/carddav/).")


async def well_known(request: web.Request) -> web.Response:
    """RFC 6764 §5: the well-known URI redirects to the context path."""
    raise web.HTTPMovedPermanently(PREFIX)


def require_private_channel(request: web.Request) -> None:
    """403 for a client that is neither on TLS nor on loopback: Basic would show its password (RFC 7617 §4)."""
    if not request.secure and not is_loopback(request.remote):
        raise web.HTTPForbidden(text=PLAIN_HTTP_REFUSED)


async def _account(request: web.Request):
    """The account named by HTTP Basic credentials, or a 401/429 with the challenge (RFC 7617 §2)."""
    challenge = {"WWW-Authenticate": 'Basic realm="Postroom", charset="UTF-8"'}
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or len(value) > MAX_CREDENTIAL_CHARS:
        raise web.HTTPUnauthorized(headers=challenge)
    try:
        address, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise web.HTTPUnauthorized(headers=challenge) from None
    if not sep:
        raise web.HTTPUnauthorized(headers=challenge)
    try:
        # As IMAP: with two-step sign-in on, only an app password (mailserver/auth.py).
        return await request.app[WEBMAIL].login(address, password, request.remote, protocol="carddav")
    except SignInRefused as exc:
        if exc.retry_after is not None:
            raise web.HTTPTooManyRequests(headers={"Retry-After": str(math.ceil(exc.retry_after))}) from None
        raise web.HTTPUnauthorized(headers=challenge) from None


async def _xml_body(request: web.Request):
    """The request's XML (None when empty), parsed safely from a bounded body; 413 or 400 otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, request.content_length)
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, len(body))
    if not body.strip():
        return None
    try:
        return SafeET.fromstring(body)
    except (ET.ParseError, DefusedXmlException, ValueError):
        raise web.HTTPBadRequest(text="malformed XML") from None


def _card_href(p: Person) -> str:
    return BOOK + quote(p.address, safe="@") + ".vcf"


def _props(path: str, account, people: list[Person] | None = None, person: Person | None = None) -> dict:
    """The properties a resource has: {clark name: element filler}."""
    def text(value):
        return lambda el: setattr(el, "text", value)

    def href(value):
        return lambda el: setattr(ET.SubElement(el, q(DAV, "href")), "text", value)

    def kinds(*names):
        return lambda el: [ET.SubElement(el, n) for n in names]

    def read_only(el):  # RFC 3744 §5.4: clients show the book as read-only
        ET.SubElement(ET.SubElement(el, q(DAV, "privilege")), q(DAV, "read"))
    if person is not None:
        return {q(DAV, "getetag"): text(vcards.etag(person)),
                q(DAV, "getcontenttype"): text("text/vcard; charset=utf-8"),
                q(DAV, "resourcetype"): kinds(), q(DAV, "current-user-privilege-set"): read_only}
    props = {q(DAV, "current-user-principal"): href(PRINCIPAL)}
    if path == PRINCIPAL:
        props[q(DAV, "resourcetype")] = kinds(q(DAV, "principal"))
        props[q(DAV, "displayname")] = text(account.display_name or account.address)
    elif path == BOOK:
        tag = vcards.ctag(people or [])
        props[q(DAV, "resourcetype")] = kinds(q(DAV, "collection"), q(CARD, "addressbook"))
        props[q(DAV, "displayname")] = text("组织通讯录 Organisation")
        props[q(CS, "getctag")] = text(tag)
        props[q(DAV, "sync-token")] = text(vcards.sync_token(tag))  # RFC 6578 §4
        props[q(DAV, "current-user-privilege-set")] = read_only
        props[q(CARD, "supported-address-data")] = _address_data_types  # RFC 6352 §6.2.2
        props[q(DAV, "supported-report-set")] = _reports  # RFC 3253 §3.1.5
    elif path in (PREFIX, HOME):
        props[q(DAV, "resourcetype")] = kinds(q(DAV, "collection"))
    if path in (PREFIX, PRINCIPAL, HOME):
        props[q(CARD, "addressbook-home-set")] = href(HOME)  # RFC 6352 §7.1.1
    return props


def _address_data_types(el) -> None:
    for version in (vcards.V3, vcards.V4):
        ET.SubElement(el, q(CARD, "address-data-type"), {"content-type": "text/vcard", "version": version})


def _reports(el) -> None:
    for name in REPORTS:
        ET.SubElement(ET.SubElement(ET.SubElement(el, q(DAV, "supported-report")), q(DAV, "report")), name)


def _response(href: str, props: dict, wanted: list[str] | None, extra: dict | None = None) -> ET.Element:
    """One DAV:response: the wanted (or all) properties found, and a 404 propstat for the rest (RFC 4918 §9.1)."""
    props = {**props, **(extra or {})}
    resp = ET.Element(q(DAV, "response"))
    ET.SubElement(resp, q(DAV, "href")).text = href
    names = wanted if wanted is not None else list(props)
    for found, status in ((True, "HTTP/1.1 200 OK"), (False, "HTTP/1.1 404 Not Found")):
        chosen = [n for n in names if (n in props) == found]
        if not chosen:
            continue
        ps = ET.SubElement(resp, q(DAV, "propstat"))
        prop = ET.SubElement(ps, q(DAV, "prop"))
        for n in chosen:
            el = ET.SubElement(prop, n)
            if found:
                props[n](el)
        ET.SubElement(ps, q(DAV, "status")).text = status
    return resp


def _status(href: str, status: str, error: str | None = None) -> ET.Element:
    resp = ET.Element(q(DAV, "response"))
    ET.SubElement(resp, q(DAV, "href")).text = href
    ET.SubElement(resp, q(DAV, "status")).text = status
    if error:
        ET.SubElement(ET.SubElement(resp, q(DAV, "error")), error)
    return resp


def _wanted(root) -> list[str] | None:
    """The property names a PROPFIND or REPORT asks for; None for allprop or an empty body (RFC 4918 §9.1)."""
    prop = root.find(q(DAV, "prop")) if root is not None else None
    return None if prop is None else [child.tag for child in prop][:64]


def _card(account, wanted: list[str] | None, version: str | None):
    """The DAV:response of one person's card; with its address-data in `version` when that is asked for."""
    def make(p: Person, href: str | None = None) -> ET.Element:
        extra = None
        if version is not None:
            extra = {q(CARD, "address-data"): lambda el: setattr(el, "text", vcards.vcard(p, version))}
        return _response(href or _card_href(p), _props(BOOK, account, person=p), wanted, extra)
    return make


def _address_data_version(root) -> str | None:
    """The vCard version asked for in <prop><address-data/></prop>, None when address-data is not asked for."""
    prop = root.find(q(DAV, "prop")) if root is not None else None
    element = prop.find(q(CARD, "address-data")) if prop is not None else None
    return None if element is None else vcards.version_from_address_data(element)


async def dav(request: web.Request) -> web.StreamResponse:
    """Every method on /carddav/...: reads answered, writes refused (read-only, RFC 6352 §6.3.2 not offered)."""
    require_private_channel(request)
    if request.method not in READ_METHODS:
        raise web.HTTPForbidden(text="the organisation address book is read-only")
    account = await _account(request)
    path = request.path if request.path.endswith("/") or request.path.endswith(".vcf") else request.path + "/"
    book = request.app[WEBMAIL].mailboxes.addressbook
    if request.method == "OPTIONS":
        return web.Response(headers={"DAV": "1, 3, addressbook", "Allow": ", ".join(sorted(READ_METHODS))})
    if path.startswith(BOOK) and path.endswith(".vcf"):
        found = await book.people([unquote(path[len(BOOK):-4])])
        if not found:
            raise web.HTTPNotFound()
        if request.method in ("GET", "HEAD"):
            return _get(request, found[0])
        root = await _xml_body(request)
        return await stream(request, _wanted(root), [_response(path, _props(path, account, person=found[0]),
                                                               _wanted(root))])
    if path not in (PREFIX, PRINCIPAL, HOME, BOOK):
        raise web.HTTPNotFound()
    if request.method in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, sorted(READ_METHODS - {"GET", "HEAD"}))
    root = await _xml_body(request)
    if request.method == "REPORT":
        return await _report(request, account, path, root)
    people = await book.everyone() if path in (BOOK, HOME) else None
    wanted = _wanted(root)
    depth1 = request.headers.get("Depth", "1") != "0"  # RFC 4918 §9.1: infinity is answered as 1
    def listed(where: str) -> ET.Element:
        return _response(where, _props(where, account, people), wanted)
    # The book's getctag hashes up to 10,000 etags: in a thread.
    head = [await asyncio.to_thread(listed, path) if path == BOOK else listed(path)]
    if depth1 and path == HOME:
        head.append(await asyncio.to_thread(listed, BOOK))
    members = people if depth1 and path == BOOK else []
    return await stream(request, wanted, head, members, _card(account, wanted, None))


def _get(request: web.Request, p: Person) -> web.Response:
    """GET of one card: 4.0 when Accept prefers it (RFC 6352 §6.2.2 types), else 3.0; 304 for a matching etag."""
    tag = vcards.etag(p)
    headers = {"ETag": tag, "Vary": "Accept"}
    if {tag, "*"} & {t.strip() for t in request.headers.get("If-None-Match", "")[:1024].split(",")}:
        return web.Response(status=304, headers=headers)  # RFC 9110 §13.1.2
    version = vcards.version_from_accept(request.headers.get("Accept"))
    body = vcards.vcard(p, version).encode("utf-8")
    headers["Content-Type"] = f"text/vcard; charset=utf-8; version={version}"
    return web.Response(body=body if request.method == "GET" else None, headers=headers)


async def _report(request: web.Request, account, path: str, root) -> web.StreamResponse:
    if path != BOOK or root is None or root.tag not in REPORTS:
        raise web.HTTPForbidden(text="supported here: addressbook-query, addressbook-multiget, sync-collection "
                                     "on the address book")
    if root.tag == q(CARD, "addressbook-multiget"):
        return await _multiget(request, account, root)
    if root.tag == q(CARD, "addressbook-query"):
        return await _query(request, account, root)
    return await _sync(request, account, root)


async def _multiget(request: web.Request, account, root) -> web.StreamResponse:
    """RFC 6352 §8.7: the named cards with their etags and address-data (at most MAX_MULTIGET)."""
    hrefs = [h.text or "" for h in root.findall(q(DAV, "href"))][:MAX_MULTIGET]
    names = {h: unquote(h.rsplit("/", 1)[-1])[:-4] for h in hrefs if h.startswith(BOOK) and h.endswith(".vcf")}
    found = {p.address: p for p in await request.app[WEBMAIL].mailboxes.addressbook.people(list(names.values()))}
    wanted = _wanted(root)
    card = _card(account, wanted, _address_data_version(root))
    out = []
    for h in hrefs:
        p = found.get(names.get(h, "").lower())
        out.append(_status(h, "HTTP/1.1 404 Not Found") if p is None else card(p, h))
    return await stream(request, wanted, out)


async def _query(request: web.Request, account, root) -> web.StreamResponse:
    """RFC 6352 §8.6: the cards matching the filter, at most the client's nresults and MAX_QUERY_RESULTS."""
    try:
        flt = vcards.parse_filter(root.find(q(CARD, "filter")))
    except vcards.FilterRefused as exc:  # §8.6 preconditions CARDDAV:supported-filter / supported-collation
        return web.Response(status=403, body=error_body(q(CARD, exc.condition)), content_type="application/xml",
                            charset="utf-8")
    limit = MAX_QUERY_RESULTS
    nresults = root.find(f"{q(CARD, 'limit')}/{q(CARD, 'nresults')}")
    if nresults is not None:
        try:
            limit = max(1, min(limit, int((nresults.text or "").strip())))
        except ValueError:
            raise web.HTTPBadRequest(text="nresults must be a number") from None
    people = await request.app[WEBMAIL].mailboxes.addressbook.everyone()
    chosen = await asyncio.to_thread(_first_matches, people, flt, limit + 1)
    wanted = _wanted(root)
    tail = []
    if len(chosen) > limit:  # §8.6.1: truncated, said with a 507 for the Request-URI
        chosen = chosen[:limit]
        tail.append(_status(BOOK, "HTTP/1.1 507 Insufficient Storage", q(DAV, "number-of-matches-within-limits")))
    return await stream(request, wanted, [], chosen, _card(account, wanted, _address_data_version(root)), tail)


def _first_matches(people: list[Person], flt: vcards.CardFilter, at_most: int) -> list[Person]:
    out = []
    for p in people:
        if vcards.matches(p, flt):
            out.append(p)
            if len(out) >= at_most:
                break
    return out


async def _sync(request: web.Request, account, root) -> web.StreamResponse:
    """RFC 6578 §3.2 without history: everything for an empty token, nothing for the current one, else 403."""
    given = (root.findtext(q(DAV, "sync-token")) or "").strip()
    people = await request.app[WEBMAIL].mailboxes.addressbook.everyone()
    current = vcards.sync_token(await asyncio.to_thread(vcards.ctag, people))
    if given and given != current:
        return web.Response(status=403, body=error_body(q(DAV, "valid-sync-token")), content_type="application/xml",
                            charset="utf-8")
    token = ET.Element(q(DAV, "sync-token"))
    token.text = current
    wanted = _wanted(root)
    return await stream(request, wanted, [], [] if given else people, _card(account, wanted, None), [token])
