"""CardDAV vCards carry a REV that follows what the address book shows: a rename through the JSON API moves REV, ETag and sync-token; a quota change does not."""

from __future__ import annotations

from datetime import datetime, timezone

import vobject
from defusedxml import ElementTree as ET

from webmail.views.carddav import BOOK

from .people import Api, make_org
from .test_carddav import D, auth, dav, responses

H1 = BOOK + "h1@city.test.vcf"
F1 = BOOK + "f1@city.test.vcf"
SYNC = ('<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level>'
        "<d:prop><d:getetag/></d:prop></d:sync-collection>")
MULTIGET = ('<card:addressbook-multiget xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav"><d:prop>'
            "<d:getetag/><card:address-data/></d:prop><d:href>{}</d:href><d:href>{}</d:href>"
            "</card:addressbook-multiget>")


async def _book(client) -> tuple[dict[str, tuple[str, object]], str]:
    """({href: (etag, parsed vCard)} for h1 and f1, the book's sync-token), as a CardDAV client reads them."""
    r, body = await dav(client, "REPORT", BOOK, MULTIGET.format(H1, F1).encode(), depth="1")
    assert r.status == 207
    found = responses(body)
    cards = {h: (p[D + "getetag"].text, vobject.readOne(p["{urn:ietf:params:xml:ns:carddav}address-data"].text))
             for h, p in found.items()}
    r, body = await dav(client, "REPORT", BOOK, SYNC.format("").encode(), depth="1")
    assert r.status == 207
    return cards, ET.fromstring(body).findtext(D + "sync-token")


def _clock(web, *when: int):
    web.mb.directory.clock = lambda: datetime(*when, tzinfo=timezone.utc)


async def test_rev_etag_and_sync_token_follow_renames_not_quotas(web, client):
    org = make_org(web)
    api = Api(web, org.tokens["alice@city.test"])
    cards, token = await _book(client)
    created = cards[H1][1].rev.value
    assert len(created) == 16 and created.endswith("Z")  # RFC 6350 §4.3.5 basic UTC timestamp: created_at
    async with client.session.get(client.base + H1, headers=auth()) as r:  # GET and REPORT: the same card
        assert r.headers["ETag"] == cards[H1][0] and vobject.readOne(await r.text()).rev.value == created

    _clock(web, 2030, 1, 2, 3, 4, 5)
    assert (await api("PATCH", "/accounts/h1@city.test", {"display_name": "人事壹"}))[0] == 200
    renamed, token2 = await _book(client)
    assert renamed[H1][1].rev.value == "20300102T030405Z" and renamed[H1][1].fn.value == "人事壹"
    assert renamed[H1][0] != cards[H1][0] and token2 != token
    assert renamed[F1][0] == cards[F1][0]  # a colleague's card is untouched

    _clock(web, 2031, 1, 1, 0, 0, 0)
    assert (await api("PATCH", "/accounts/h1@city.test", {"quota_bytes": 12345, "role": "user"}))[0] == 200
    same, token3 = await _book(client)
    assert same[H1][1].rev.value == "20300102T030405Z" and same[H1][0] == renamed[H1][0] and token3 == token2

    _clock(web, 2032, 6, 7, 8, 9, 10)  # the department's name is on the card (ORG): its rename is a change
    assert (await api("PATCH", "/departments/hr", {"name": "人事教育处"}))[0] == 200
    moved, token4 = await _book(client)
    assert moved[H1][1].rev.value == "20320607T080910Z" and moved[H1][1].org.value == ["人事教育处"]
    assert moved[H1][0] != renamed[H1][0] and token4 != token3 and moved[F1][0] == cards[F1][0]
    r, body = await dav(client, "REPORT", BOOK, SYNC.format(token2).encode(), depth="1")
    assert r.status == 403  # a stale token: the client syncs afresh (RFC 6578 §3.2)

    _clock(web, 2033, 1, 1, 0, 0, 0)  # moved to another department: a change too
    assert (await api("PATCH", "/accounts/f1@city.test", {"department": "hr"}))[0] == 200
    last, _ = await _book(client)
    assert last[F1][1].rev.value == "20330101T000000Z" and last[F1][1].org.value == ["人事教育处"]
