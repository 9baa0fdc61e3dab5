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
- Client XML is parsed with defusedxml (no entities, no external DTDs) from a body
  of at most MAX_BODY_BYTES; a multiget names at most MAX_MULTIGET hrefs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
from urllib.parse import quote, unquote
from xml.etree import ElementTree as ET

import vobject
from aiohttp import web
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from mailboxes.addressbook import MAX_RESULTS, Person

from ..context import WEBMAIL, SignInRefused

PREFIX = "/carddav/"
PRINCIPAL = "/carddav/principal/"
HOME = "/carddav/books/"
BOOK = "/carddav/books/organisation/"
MAX_BODY_BYTES = 64 * 1024  # a PROPFIND or REPORT body larger than this gets 413
MAX_MULTIGET = MAX_RESULTS  # hrefs answered per addressbook-multiget
MAX_CREDENTIAL_CHARS = 1024  # a longer Authorization header is refused without decoding
DAV, CARD, CS = "DAV:", "urn:ietf:params:xml:ns:carddav", "http://calendarserver.org/ns/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"})
ET.register_namespace("d", DAV)
ET.register_namespace("card", CARD)
ET.register_namespace("cs", CS)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


async def well_known(request: web.Request) -> web.Response:
    """RFC 6764 §5: the well-known URI redirects to the context path."""
    raise web.HTTPMovedPermanently(PREFIX)


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


def _card_name(p: Person) -> str:
    return quote(p.address, safe="@") + ".vcf"


def vcard(p: Person) -> str:
    """The person's vCard 3.0 (RFC 2426, as vobject writes it; what CardDAV clients all read, RFC 6352 §5.1)."""
    card = vobject.vCard()
    card.add("uid").value = "urn:postroom:" + p.address
    card.add("fn").value = p.name or p.address
    card.add("n").value = vobject.vcard.Name(family=p.name or p.address)
    email = card.add("email")
    email.value = p.address
    email.type_param = "INTERNET"
    if p.department_name:
        card.add("org").value = [p.department_name]
    return card.serialize()


CARD_VERSION = "1"  # bump when vcard() changes what it writes, so clients fetch the cards again


def _etag(p: Person) -> str:
    """The card's entity tag from the fields it is made of: listing 10,000 cards builds no vCard."""
    fields = "\0".join((CARD_VERSION, p.address, p.name, p.department_code or "", p.department_name or ""))
    return '"' + hashlib.sha256(fields.encode()).hexdigest()[:32] + '"'


def _ctag(people: list[Person]) -> str:
    """The address book's version (the calendarserver.org getctag clients poll): changes when any card does."""
    return '"' + hashlib.sha256("".join(_etag(p) for p in people).encode()).hexdigest()[:32] + '"'


def _props(path: str, account, people: list[Person] | None = None, person: Person | None = None) -> dict:
    """The properties a resource has: {clark name: element filler}."""
    def text(value):
        return lambda el: setattr(el, "text", value)

    def href(value):
        return lambda el: setattr(ET.SubElement(el, _q(DAV, "href")), "text", value)

    def kinds(*names):
        return lambda el: [ET.SubElement(el, n) for n in names]
    props = {_q(DAV, "current-user-principal"): href(PRINCIPAL)}
    if path == PRINCIPAL:
        props[_q(DAV, "resourcetype")] = kinds(_q(DAV, "principal"))
        props[_q(DAV, "displayname")] = text(account.display_name or account.address)
    elif path == BOOK:
        props[_q(DAV, "resourcetype")] = kinds(_q(DAV, "collection"), _q(CARD, "addressbook"))
        props[_q(DAV, "displayname")] = text("组织通讯录 Organisation")
        props[_q(CS, "getctag")] = text(_ctag(people or []))
    elif path in (PREFIX, HOME):
        props[_q(DAV, "resourcetype")] = kinds(_q(DAV, "collection"))
    if person is not None:
        props = {_q(DAV, "getetag"): text(_etag(person)), _q(DAV, "getcontenttype"): text("text/vcard; charset=utf-8"),
                 _q(DAV, "resourcetype"): kinds()}
    if path in (PREFIX, PRINCIPAL, HOME):
        props[_q(CARD, "addressbook-home-set")] = href(HOME)  # RFC 6352 §7.1.1
    return props


def _response(ms, href: str, props: dict, wanted: list[str] | None, extra: dict | None = None) -> None:
    """One DAV:response: the wanted (or all) properties found, and a 404 propstat for the rest (RFC 4918 §9.1)."""
    props = {**props, **(extra or {})}
    resp = ET.SubElement(ms, _q(DAV, "response"))
    ET.SubElement(resp, _q(DAV, "href")).text = href
    names = wanted if wanted is not None else list(props)
    for found, status in ((True, "HTTP/1.1 200 OK"), (False, "HTTP/1.1 404 Not Found")):
        chosen = [n for n in names if (n in props) == found]
        if not chosen:
            continue
        ps = ET.SubElement(resp, _q(DAV, "propstat"))
        prop = ET.SubElement(ps, _q(DAV, "prop"))
        for n in chosen:
            el = ET.SubElement(prop, n)
            if found:
                props[n](el)
        ET.SubElement(ps, _q(DAV, "status")).text = status


def _multistatus(ms) -> web.Response:  # small answers (one resource, a bounded multiget): on the loop
    return web.Response(status=207, body=ET.tostring(ms, encoding="utf-8", xml_declaration=True),
                        content_type="application/xml", charset="utf-8")


def _wanted(root) -> list[str] | None:
    """The property names a PROPFIND or REPORT asks for; None for allprop or an empty body (RFC 4918 §9.1)."""
    prop = root.find(_q(DAV, "prop")) if root is not None else None
    return None if prop is None else [child.tag for child in prop][:64]


async def dav(request: web.Request) -> web.Response:
    """Every method on /carddav/...: reads answered, writes refused (read-only, RFC 6352 §6.3.2 not offered)."""
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
            return web.Response(text=vcard(found[0]), content_type="text/vcard", charset="utf-8",
                                headers={"ETag": _etag(found[0])})
        root = await _xml_body(request)
        ms = ET.Element(_q(DAV, "multistatus"))
        _response(ms, path, _props(path, account, person=found[0]), _wanted(root))
        return _multistatus(ms)
    if path not in (PREFIX, PRINCIPAL, HOME, BOOK):
        raise web.HTTPNotFound()
    if request.method in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, sorted(READ_METHODS - {"GET", "HEAD"}))
    root = await _xml_body(request)
    if request.method == "REPORT":
        return await _multiget(request, account, root)
    people = await book.everyone() if path in (BOOK, HOME) else None
    depth1 = request.headers.get("Depth", "1") != "0"  # RFC 4918 §9.1: infinity is answered as 1
    # Listing 10,000 cards takes ~0.4 s of Python: in a thread, so the loop keeps serving meanwhile.
    body = await asyncio.to_thread(_listing, path, account, people, _wanted(root), depth1)
    return web.Response(status=207, body=body, content_type="application/xml", charset="utf-8")


def _listing(path: str, account, people: list[Person] | None, wanted: list[str] | None, depth1: bool) -> bytes:
    """The PROPFIND multistatus of a collection (and, at Depth 1, its members), serialised."""
    ms = ET.Element(_q(DAV, "multistatus"))
    _response(ms, path, _props(path, account, people), wanted)
    if depth1 and path == HOME:
        _response(ms, BOOK, _props(BOOK, account, people), wanted)
    elif depth1 and path == BOOK:
        for p in people:
            _response(ms, BOOK + _card_name(p), _props(BOOK, account, person=p), wanted)
    return ET.tostring(ms, encoding="utf-8", xml_declaration=True)


async def _multiget(request: web.Request, account, root) -> web.Response:
    """RFC 6352 §8.7: the named cards with their etags and address-data (at most MAX_MULTIGET)."""
    if request.path.rstrip("/") + "/" != BOOK or root is None or root.tag != _q(CARD, "addressbook-multiget"):
        raise web.HTTPForbidden(text="only addressbook-multiget on the address book is supported")
    hrefs = [h.text or "" for h in root.findall(_q(DAV, "href"))][:MAX_MULTIGET]
    names = {h: unquote(h.rsplit("/", 1)[-1])[:-4] for h in hrefs if h.startswith(BOOK) and h.endswith(".vcf")}
    found = {p.address: p for p in await request.app[WEBMAIL].mailboxes.addressbook.people(list(names.values()))}
    ms = ET.Element(_q(DAV, "multistatus"))
    wanted = _wanted(root)
    for h in hrefs:
        p = found.get(names.get(h, "").lower())
        if p is None:
            resp = ET.SubElement(ms, _q(DAV, "response"))
            ET.SubElement(resp, _q(DAV, "href")).text = h
            ET.SubElement(resp, _q(DAV, "status")).text = "HTTP/1.1 404 Not Found"
            continue
        _response(ms, h, _props(BOOK, account, person=p), wanted,
                  {_q(CARD, "address-data"): lambda el, c=vcard(p): setattr(el, "text", c)})
    return _multistatus(ms)
