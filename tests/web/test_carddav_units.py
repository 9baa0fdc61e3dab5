"""Pure parts of CardDAV: the Forwarded header, Accept's vCard version, the addressbook-query matcher, the XML writer."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from defusedxml import ElementTree as SafeET

from mailboxes.addressbook import Person
from webmail import davxml, forwarded, vcards

WANG = Person("wangfang@city.test", "王芳", "office", "办公室")
ALICE = Person("alice@city.test", "Ålice Smith", None, None)


@pytest.mark.parametrize("header, expected", [
    ("for=192.0.2.60;proto=http;by=203.0.113.43", {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}),
    ('for="_gazonk", For="[2001:db8:cafe::17]:4711"; PROTO=https', {"for": "[2001:db8:cafe::17]:4711",
                                                                    "proto": "https"}),
    ("nonsense", {}),
])
def test_only_the_last_forwarded_element_is_read(header, expected):
    assert forwarded.last_element(header) == expected


def test_loopback_includes_ipv4_mapped_and_excludes_names():
    assert forwarded.is_loopback("127.0.0.1") and forwarded.is_loopback("::1")
    assert forwarded.is_loopback("::ffff:127.0.0.1")
    assert not forwarded.is_loopback("203.0.113.7") and not forwarded.is_loopback("unknown")
    assert not forwarded.is_loopback(None) and not forwarded.is_loopback("localhost")


@pytest.mark.parametrize("accept, version", [
    (None, "3.0"), ("", "3.0"), ("*/*", "3.0"), ("text/vcard;version=4.0", "4.0"),
    ("text/vcard;version=4.0;q=abc", "3.0"), ("text/vcard;version=4.0, " * 2000, "3.0"),  # too long: default
    ("text/html, text/vcard; version=4.0; q=0.1", "4.0"),
])
def test_vcard_version_from_accept(accept, version):
    assert vcards.version_from_accept(accept) == version


def _filter(xml: str) -> vcards.CardFilter:
    return vcards.parse_filter(SafeET.fromstring(
        f'<C:filter xmlns:C="urn:ietf:params:xml:ns:carddav" {xml}</C:filter>'))


@pytest.mark.parametrize("xml, wang, alice", [
    ('><C:prop-filter name="fn"><C:text-match>王</C:text-match></C:prop-filter>', True, False),
    ('><C:prop-filter name="FN"><C:text-match collation="i;unicode-casemap">åLICE</C:text-match></C:prop-filter>',
     False, True),
    ('><C:prop-filter name="FN"><C:text-match collation="i;ascii-casemap">åLICE</C:text-match></C:prop-filter>',
     False, False),  # ASCII casemap leaves Å alone
    ('><C:prop-filter name="FN" test="allof"><C:text-match>smith</C:text-match><C:text-match match-type="starts-with">'
     'ålice</C:text-match></C:prop-filter>', False, True),
    ('><C:prop-filter name="TEL"><C:text-match>1</C:text-match></C:prop-filter>', False, False),
    ('><C:prop-filter name="TEL"><C:is-not-defined/></C:prop-filter>', True, True),
    ('test="allof"><C:prop-filter name="ORG"/><C:prop-filter name="EMAIL"><C:text-match match-type="ends-with">'
     '@city.test</C:text-match></C:prop-filter>', True, False),
])
def test_filters_match_the_cards_fields(xml, wang, alice):
    f = _filter(xml)
    assert (vcards.matches(WANG, f), vcards.matches(ALICE, f)) == (wang, alice)


def test_every_card_field_a_filter_sees_is_in_the_card():
    for person in (WANG, ALICE):
        text = vcards.vcard(person, vcards.V4)
        for values in vcards.properties(person).values():
            assert all(v in text for v in values)


def test_the_writer_escapes_text_and_keeps_carriage_returns():
    el = ET.Element(davxml.q(davxml.DAV, "href"))
    el.text = "a&b<c>\r\n"
    assert davxml.serialise(el, davxml.prefixes(None)) == "<d:href>a&amp;b&lt;c&gt;&#13;\n</d:href>"
    assert SafeET.fromstring(b'<r xmlns:d="DAV:">' + davxml.serialise(el, davxml.FIXED_PREFIXES).encode()
                             + b"</r>")[0].text == "a&b<c>\r\n"


def test_rev_is_a_utc_timestamp_in_both_versions_and_part_of_the_etag():
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    east8 = timezone(timedelta(hours=8))
    wang = replace(WANG, updated=datetime(2026, 12, 5, 6, 30, 1, tzinfo=east8))
    for version in (vcards.V3, vcards.V4):
        assert "\r\nREV:20261204T223001Z\r\n" in vcards.vcard(wang, version)  # RFC 6350 §6.7.4, in UTC
    assert "REV" not in vcards.vcard(WANG)  # unknown: no REV rather than a made-up one
    later = replace(wang, updated=wang.updated + timedelta(seconds=1))
    assert len({vcards.etag(WANG), vcards.etag(wang), vcards.etag(later)}) == 3
