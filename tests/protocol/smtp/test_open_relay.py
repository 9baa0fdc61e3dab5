"""No open relay at the real server: address tricks from an unauthenticated client are refused and nothing is queued.

Each row is sent as RCPT TO on the port-25 listener of a running server,
after a plain MAIL FROM from an outside address. Every trick must be
refused with a 5yz reply (the code given), DATA must then find no valid
recipient, and at the end the queue is empty and no mailbox got anything.
"""

from __future__ import annotations

import pytest

from .support import RawClient

RELAY = (554, "5.7.1")
LITERAL_REFUSED = RELAY
NO_USER = (550, "5.1.1")
SYNTAX = (501, "5.1.3")
NON_ASCII = (553, "5.6.7")
PARAM = (555, "5.5.4")

# (label, RCPT TO argument, expected (code, enhanced))
TRICKS = [
    ("plain remote", "<x@remote.example>", RELAY),
    ("percent hack", "<x%remote.example@city.test>", NO_USER),
    ("percent hack to a real user", "<li.na%remote.example@city.test>", NO_USER),
    ("double percent hack", "<x%y%remote.example@city.test>", NO_USER),
    ("source route through us", "<@city.test:x@remote.example>", RELAY),
    ("two-hop source route", "<@city.test,@mail.city.test:x@remote.example>", RELAY),
    ("quoted @ in local part", '<"x@remote.example"@city.test>', NO_USER),
    ("quoted percent", '<"x%remote.example"@city.test>', NO_USER),
    ("bang path", "<remote.example!x@city.test>", NO_USER),
    ("bang path to a real user", "<remote.example!li.na@city.test>", NO_USER),
    ("trailing dot on remote", "<x@remote.example.>", RELAY),
    ("subdomain of ours", "<x@evil.city.test>", RELAY),
    ("our name inside theirs", "<x@city.test.remote.example>", RELAY),
    ("suffix trap", "<x@notcity.test>", RELAY),
    ("IPv4 literal", "<x@[192.0.2.1]>", LITERAL_REFUSED),
    ("loopback literal", "<x@[127.0.0.1]>", LITERAL_REFUSED),
    ("IPv6 literal", "<x@[IPv6:2001:db8::1]>", LITERAL_REFUSED),
    ("bare IP as domain", "<x@192.0.2.1>", SYNTAX),
    ("bare host name", "<x@localhost>", RELAY),
    ("two @", "<x@city.test@remote.example>", SYNTAX),
    ("no angle brackets", "x@remote.example", SYNTAX),
    ("junk after the path", "<x@remote.example>>", SYNTAX),
    ("two paths", "<li.na@city.test>,<x@remote.example>", SYNTAX),
    ("CRLF smuggled", "<li.na@city.test>\rRCPT TO:<x@remote.example>", SYNTAX),
    ("homoglyph of our domain without SMTPUTF8", "<x@cіty.test>", NON_ASCII),
    ("punycode lookalike", "<x@xn--cty-tdd.test>", RELAY),
    ("null path", "<>", SYNTAX),
    ("display name form", "<Boss <x@remote.example>>", SYNTAX),
    ("DSN parameter we do not offer", "<x@remote.example> NOTIFY=NEVER", PARAM),
]


@pytest.mark.parametrize("smtputf8", [False, True], ids=["ascii", "smtputf8"])
async def test_address_tricks_are_refused_and_nothing_is_queued(city, smtputf8):
    c = await RawClient.connect(city.port("smtp"))
    assert (await c.cmd("EHLO relay-tester.example"))[0] == 250
    seen = []
    for label, arg, expected in TRICKS:
        assert (await c.cmd("MAIL FROM:<spammer@remote.example>" + (" SMTPUTF8" if smtputf8 else "")))[0] == 250
        code, text = await c.cmd(f"RCPT TO:{arg}".encode())
        if smtputf8 and expected == NON_ASCII:
            expected = RELAY  # with SMTPUTF8 the lookalike is parsed, and is simply not ours
        seen.append((label, code, text.split()[0] if text else ""))
        assert (code, text.split()[0]) == expected, (label, code, text)
        assert await c.cmd("DATA") == (554, "5.5.1 No valid recipients"), label
        assert (await c.cmd("RSET"))[0] == 250
    await c.close()
    assert len(seen) >= 20
    assert await city.parts.queue.entries() == []
    for user in ("li.na@city.test", "zhang.wei@city.test"):
        assert await city.inbox(user) == []


async def test_failed_login_does_not_open_the_relay(city):
    c = await RawClient.connect(city.port("smtp"))
    await c.cmd("EHLO relay-tester.example")
    await c.cmd("MAIL FROM:<spammer@remote.example>")
    assert (await c.cmd("AUTH PLAIN AHppbmcueWFuZ0BjaXR5LnRlc3QAd3Jvbmc="))[0] in (503, 538)
    assert (await c.cmd("RCPT TO:<x@remote.example>"))[0] == 554
    await c.close()
    s = await RawClient.connect(city.port("submission"))
    await s.cmd("EHLO relay-tester.example")
    assert (await s.cmd("MAIL FROM:<spammer@remote.example>"))[0] == 530
    assert (await s.cmd("RCPT TO:<x@remote.example>"))[0] == 530
    await s.close()
    assert await city.parts.queue.entries() == []
