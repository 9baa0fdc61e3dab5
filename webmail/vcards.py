"""The directory's people as vCards (3.0 or 4.0), their entity tags, and the CardDAV addressbook-query filter: pure, no I/O.

Implementation notes
- A card's ETag is a hash of the fields it is made of (and CARD_VERSION), so it changes exactly
  when the person's entry does, is the same on every node, and listing 10,000 cards builds no
  vCard. Both representations (3.0, 4.0) derive from the same fields and share the ETag, as
  other CardDAV servers do. The collection's getctag and sync-token hash all the ETags.
- The vCard's REV (RFC 6350 §6.7.4, RFC 2426 §3.6.4) is when the person's name, department
  or enabled state, or the department's name, last changed (accounts.updated_at,
  departments.updated_at, else created_at); it is one of the fields the ETag hashes.
- addressbook-query filters (RFC 6352 §10.5) are parsed into plain tuples, bounded
  (MAX_PROP_FILTERS, MAX_TEXT_MATCHES, MAX_MATCH_CHARS), and matched without regular
  expressions: str.casefold() for i;unicode-casemap (RFC 5051), ASCII lower-casing for
  i;ascii-casemap (RFC 4790 §9.2), exact for i;octet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timezone

import vobject

from mailboxes.addressbook import Person

CARD_VERSION = "2"  # bump when vcard() changes what it writes, so clients fetch the cards again
V3, V4 = "3.0", "4.0"
CARD = "urn:ietf:params:xml:ns:carddav"
MAX_PROP_FILTERS = 16  # prop-filters in one query at most (more: 403 supported-filter)
MAX_TEXT_MATCHES = 8  # text-matches per prop-filter at most
MAX_MATCH_CHARS = 256  # a longer text-match is refused
MAX_ACCEPT_CHARS = 1024  # a longer Accept header is read as "no preference"
COLLATIONS = ("i;unicode-casemap", "i;ascii-casemap", "i;octet")
MATCH_TYPES = ("equals", "contains", "starts-with", "ends-with")


class FilterRefused(ValueError):
    """A filter this server does not evaluate; `condition` is the RFC 6352 precondition element's name."""

    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


def vcard(p: Person, version: str = V3) -> str:
    """The person's vCard: 3.0 (RFC 2426, what every CardDAV client reads) or 4.0 (RFC 6350)."""
    card = vobject.vCard()
    if version == V4:
        card.add("version").value = V4
        card.add("kind").value = "individual"  # RFC 6350 §6.1.4
    card.add("uid").value = "urn:postroom:" + p.address
    card.add("fn").value = p.name or p.address
    card.add("n").value = vobject.vcard.Name(family=p.name or p.address)
    email = card.add("email")
    email.value = p.address
    email.type_param = "work" if version == V4 else "INTERNET"  # RFC 6350 §6.4.2 / RFC 2426 §3.3.2
    if p.department_name:
        card.add("org").value = [p.department_name]
    if p.updated is not None:
        card.add("rev").value = rev(p)
    return card.serialize()


def rev(p: Person) -> str:
    """The REV value: a UTC timestamp in the basic format (RFC 6350 §6.7.4, §4.3.5), '' when unknown."""
    return p.updated.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ") if p.updated is not None else ""


def etag(p: Person) -> str:
    """The card's strong entity tag (RFC 9110 §8.8.3), from the fields the card is made of."""
    fields = "\0".join((CARD_VERSION, p.address, p.name, p.department_code or "", p.department_name or "", rev(p)))
    return '"' + hashlib.sha256(fields.encode()).hexdigest()[:32] + '"'


def ctag(people: Iterable[Person]) -> str:
    """The address book's version: changes when any card is added, changed or removed."""
    h = hashlib.sha256()
    for p in people:
        h.update(etag(p).encode())
    return '"' + h.hexdigest()[:32] + '"'


def sync_token(ctag_value: str) -> str:
    """The collection's DAV:sync-token (RFC 6578 §4): a URI naming the book's version."""
    return "urn:postroom:carddav:sync:" + ctag_value.strip('"')


def _media_ranges(header: str):
    """(type, version, q) per media range of an Accept header (RFC 9110 §12.5.1), tolerant of junk."""
    for item in header.split(",")[:32]:
        kind, *params = (x.strip() for x in item.split(";"))
        version, q = None, 1.0
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "version":
                version = value
            elif name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        yield kind.lower(), version, q


def version_from_accept(header: str | None) -> str:
    """4.0 when the client prefers text/vcard;version=4.0 (RFC 6352 §6.2.2 mechanism over Accept), else 3.0."""
    if not header or len(header) > MAX_ACCEPT_CHARS:
        return V3
    best = {V3: 0.0, V4: 0.0}
    for kind, version, q in _media_ranges(header):
        if kind == "text/vcard" and version in best:
            best[version] = max(best[version], q)
    return V4 if best[V4] > 0 and best[V4] > best[V3] else V3


def version_from_address_data(element) -> str:
    """The version a CARDDAV:address-data element asks for (RFC 6352 §10.4: content-type and version)."""
    if element is None:
        return V3
    kind = (element.get("content-type") or "text/vcard").lower()
    return V4 if kind == "text/vcard" and element.get("version") == V4 else V3


# A filter is (anyof: bool, prop-filters); a prop-filter is (NAME, anyof, is_not_defined, text-matches);
# a text-match is (text, collation, match_type, negate).
TextMatch = tuple[str, str, str, bool]
PropFilter = tuple[str, bool, bool, tuple[TextMatch, ...]]


@dataclass(frozen=True)
class CardFilter:
    anyof: bool
    props: tuple[PropFilter, ...]


def _q(name: str) -> str:
    return f"{{{CARD}}}{name}"


def parse_filter(element) -> CardFilter:
    """The CARDDAV:filter element (RFC 6352 §10.5) as a CardFilter; FilterRefused for what we do not evaluate."""
    if element is None:
        return CardFilter(True, ())
    props = element.findall(_q("prop-filter"))
    if len(props) > MAX_PROP_FILTERS:
        raise FilterRefused("supported-filter")
    out = []
    for pf in props:
        name = (pf.get("name") or "").upper()
        if not name or pf.find(_q("param-filter")) is not None:
            raise FilterRefused("supported-filter")  # §10.5.2 param-filter: not offered
        matches = pf.findall(_q("text-match"))
        if len(matches) > MAX_TEXT_MATCHES:
            raise FilterRefused("supported-filter")
        tms = []
        for tm in matches:
            collation = tm.get("collation", "i;unicode-casemap")
            match_type = tm.get("match-type", "contains")
            text = tm.text or ""
            if collation not in COLLATIONS:
                raise FilterRefused("supported-collation")  # §8.3 precondition
            if match_type not in MATCH_TYPES or len(text) > MAX_MATCH_CHARS:
                raise FilterRefused("supported-filter")
            tms.append((_fold(text, collation), collation, match_type, tm.get("negate-condition") == "yes"))
        out.append((name, pf.get("test", "anyof") != "allof", pf.find(_q("is-not-defined")) is not None,
                    tuple(tms)))
    return CardFilter(element.get("test", "anyof") != "allof", tuple(out))


def _fold(text: str, collation: str) -> str:
    if collation == "i;unicode-casemap":
        return text.casefold()
    if collation == "i;ascii-casemap":
        return text.translate(_ASCII_LOWER)
    return text


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def properties(p: Person) -> dict[str, tuple[str, ...]]:
    """The values of each vCard property a filter can test, as vcard() writes them."""
    props = {"FN": (p.name or p.address,), "N": (p.name or p.address,), "EMAIL": (p.address,),
             "UID": ("urn:postroom:" + p.address,), "KIND": ("individual",)}
    if p.department_name:
        props["ORG"] = (p.department_name,)
    return props


def _text_matches(value: str, tm: TextMatch) -> bool:
    text, collation, match_type, negate = tm
    value = _fold(value, collation)
    hit = {"equals": value == text, "contains": text in value, "starts-with": value.startswith(text),
           "ends-with": value.endswith(text)}[match_type]
    return hit != negate


def _prop_matches(values: tuple[str, ...] | None, pf: PropFilter) -> bool:
    _, anyof, not_defined, tms = pf
    if not_defined:
        return values is None
    if values is None:
        return False
    if not tms:
        return True  # §10.5.1: an empty prop-filter matches when the property is there
    results = (any(_text_matches(v, tm) for v in values) for tm in tms)
    return any(results) if anyof else all(results)


def matches(p: Person, f: CardFilter) -> bool:
    """Whether the person's card matches the filter (RFC 6352 §10.5; no prop-filter matches every card)."""
    if not f.props:
        return True
    props = properties(p)
    results = (_prop_matches(props.get(pf[0]), pf) for pf in f.props)
    return any(results) if f.anyof else all(results)
