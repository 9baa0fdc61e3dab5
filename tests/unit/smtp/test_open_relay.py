"""No open relay: every address trick is refused for an unauthenticated client.

Each row: the RCPT TO path, then the expected outcome for an unauthenticated
client and for an authenticated one (a Route, or a (code, enhanced) pair).
"""

import pytest

from mailserver.smtp.policy import Route, check_forward_path

LOCAL_DOMAINS = {"local.test", "tax.example.cn"}

LOCAL = Route.LOCAL
REMOTE = Route.REMOTE_ALLOWED
RELAY = (554, "5.7.1")
LITERAL = (550, "5.7.1")
NO_USER = (550, "5.1.1")
SYNTAX = (501, "5.1.3")
NON_ASCII = (553, "5.6.7")
BARE_HOST = (550, "5.1.2")

# (label, path, smtputf8, unauthenticated, authenticated)
TRICKS = [
    ("percent hack", "<user%remote.example@local.test>", False, NO_USER, NO_USER),
    ("percent hack, double", "<a%b%remote.example@local.test>", False, NO_USER, NO_USER),
    ("source route via us", "<@local.test:user@remote.example>", False, RELAY, REMOTE),
    ("source route, two hops", "<@local.test,@tax.example.cn:user@remote.example>", False, RELAY, REMOTE),
    ("source route without colon", "<@local.test,user@remote.example>", False, SYNTAX, SYNTAX),
    ("quoted @ in local part", '<"user@remote.example"@local.test>', False, NO_USER, NO_USER),
    ("quoted percent", '<"user%remote"@local.test>', False, NO_USER, NO_USER),
    ("quoted space", '<"user remote"@local.test>', False, NO_USER, NO_USER),
    ("bang path", "<remote.example!user@local.test>", False, NO_USER, NO_USER),
    ("bang path, unquoted remote", "<remote!user@local.test>", False, NO_USER, NO_USER),
    ("trailing dot on remote", "<user@remote.example.>", False, RELAY, REMOTE),
    ("two trailing dots", "<user@local.test..>", False, SYNTAX, SYNTAX),
    ("IPv4 literal", "<user@[192.0.2.1]>", False, RELAY, LITERAL),
    ("IPv6 literal", "<user@[IPv6:2001:db8::1]>", False, RELAY, LITERAL),
    ("IPv6 literal with zone", "<user@[IPv6:fe80::1%eth0]>", False, SYNTAX, SYNTAX),
    ("bogus literal", "<user@[local.test]>", False, SYNTAX, SYNTAX),
    ("general literal tag", "<user@[x-tag:stuff]>", False, SYNTAX, SYNTAX),
    ("bare IP as domain", "<user@192.0.2.1>", False, SYNTAX, SYNTAX),
    ("double @", "<user@local.test@remote.example>", False, SYNTAX, SYNTAX),
    ("missing angle brackets", "user@remote.example", False, SYNTAX, SYNTAX),
    ("missing angle brackets, local", "user@local.test", False, SYNTAX, SYNTAX),
    ("junk after path", "<user@remote.example>>", False, SYNTAX, SYNTAX),
    ("junk, half bracket", "user@remote.example>", False, SYNTAX, SYNTAX),
    ("two paths", "<user@local.test>,<user@remote.example>", False, SYNTAX, SYNTAX),
    ("embedded space", "<user @local.test>", False, SYNTAX, SYNTAX),
    ("space in domain", "<user@local .test>", False, SYNTAX, SYNTAX),
    ("NUL", "<user@local.test\x00@remote.example>", False, SYNTAX, SYNTAX),
    ("CR LF injection", "<user@local.test>\r\nRCPT TO:<x@remote.example>", False, SYNTAX, SYNTAX),
    ("bare LF", "<user@remote.example\n>", False, SYNTAX, SYNTAX),
    ("subdomain of local", "<user@evil.local.test>", False, RELAY, REMOTE),
    ("local as subdomain of remote", "<user@local.test.remote.example>", False, RELAY, REMOTE),
    ("suffix match trap", "<user@notlocal.test>", False, RELAY, REMOTE),
    ("homoglyph domain, SMTPUTF8", "<user@lоcal.test>", True, RELAY, REMOTE),
    ("homoglyph domain, no SMTPUTF8", "<user@lоcal.test>", False, NON_ASCII, NON_ASCII),
    ("punycode of homoglyph", "<user@xn--lcal-55d.test>", False, RELAY, REMOTE),
    ("zero-width space in domain", "<user@local.test\u200b>", True, SYNTAX, SYNTAX),
    ("ideographic space", "<user\u3000x@local.test>", True, SYNTAX, SYNTAX),
    ("RTL override", "<user@\u202etset.lacol>", True, SYNTAX, SYNTAX),
    ("long local part", "<" + "a" * 65 + "@local.test>", False, SYNTAX, SYNTAX),
    ("long domain", "<u@" + ".".join(["a" * 60] * 5) + ".test>", False, SYNTAX, SYNTAX),
    ("long label", "<u@" + "a" * 64 + ".test>", False, SYNTAX, SYNTAX),
    ("null path as RCPT", "<>", False, SYNTAX, SYNTAX),
    ("empty local part", "<@local.test>", False, SYNTAX, SYNTAX),
    ("empty quoted local part", '<""@local.test>', False, SYNTAX, SYNTAX),
    ("leading dot", "<.user@local.test>", False, SYNTAX, SYNTAX),
    ("double dot local", "<us..er@local.test>", False, SYNTAX, SYNTAX),
    ("hyphen label", "<user@-local.test>", False, SYNTAX, SYNTAX),
    ("port in domain", "<user@local.test:25>", False, SYNTAX, SYNTAX),
    ("unlisted bare host", "<user@localhost>", False, RELAY, BARE_HOST),
    ("display name form", "<Evil <user@remote.example>>", False, SYNTAX, SYNTAX),
    ("comment in path", "<user(c)@local.test>", False, SYNTAX, SYNTAX),
    ("plain remote", "<user@remote.example>", False, RELAY, REMOTE),
    ("postmaster of remote", "<postmaster@remote.example>", False, RELAY, REMOTE),
    ("unquoted backslash", "<us\\er@local.test>", False, SYNTAX, SYNTAX),
    ("unterminated quote", '<"user@local.test>', False, SYNTAX, SYNTAX),
]

LEGAL_LOCAL = [
    ("plain", "<user@local.test>", False),
    ("second domain", "<user@tax.example.cn>", False),
    ("upper-case domain", "<user@LOCAL.TEST>", False),
    ("mixed-case domain", "<User@LoCaL.TeSt>", False),
    ("trailing dot on local domain", "<user@local.test.>", False),
    ("quoted dot-string", '<"user"@local.test>', False),
    ("source route to local", "<@remote.example:user@local.test>", False),
    ("bare postmaster", "<postmaster>", False),
    ("bare Postmaster", "<Postmaster>", False),
    ("postmaster@local", "<postmaster@local.test>", False),
    ("plus tag", "<user+tag@local.test>", False),
    ("dotted name", "<zhang.san@local.test>", False),
    ("Chinese local part", "<张三@local.test>", True),
    ("fullwidth domain", "<user@ＬＯＣＡＬ．ｔｅｓｔ>", True),
    ("space after colon leniency", " <user@local.test>", False),
]


def _outcome(result):
    return result if isinstance(result, Route) else (result.code, result.enhanced)


@pytest.mark.parametrize("label, path, utf8, unauth, auth", TRICKS, ids=[t[0] for t in TRICKS])
def test_tricks(label, path, utf8, unauth, auth):
    for authenticated, expected in ((False, unauth), (True, auth)):
        _, result = check_forward_path(path, smtputf8=utf8, authenticated=authenticated, local_domains=LOCAL_DOMAINS)
        assert _outcome(result) == expected, (label, authenticated)


@pytest.mark.parametrize("label, path, utf8", LEGAL_LOCAL, ids=[t[0] for t in LEGAL_LOCAL])
def test_legal_local_addresses_are_accepted(label, path, utf8):
    for authenticated in (False, True):
        addr, result = check_forward_path(path, smtputf8=utf8, authenticated=authenticated, local_domains=LOCAL_DOMAINS)
        assert result is Route.LOCAL, label
        assert addr is not None


def test_no_trick_reaches_remote_unauthenticated():
    for _, path, utf8, _, _ in TRICKS:
        _, result = check_forward_path(path, smtputf8=utf8, authenticated=False, local_domains=LOCAL_DOMAINS)
        assert result is not Route.REMOTE_ALLOWED, path


def test_configured_domains_are_normalised():
    # Config may spell a local domain in upper case, with a trailing dot, or as a U-label.
    for configured in ({"LOCAL.TEST."}, {"Local.Test"}):
        _, result = check_forward_path("<user@local.test>", smtputf8=False, authenticated=False, local_domains=configured)
        assert result is Route.LOCAL
    _, result = check_forward_path("<user@xn--fsqu00a.xn--0zwm56d>", smtputf8=False, authenticated=False, local_domains={"例子.测试"})
    assert result is Route.LOCAL
    _, result = check_forward_path("<user@例子.测试>", smtputf8=True, authenticated=False, local_domains={"xn--fsqu00a.xn--0zwm56d"})
    assert result is Route.LOCAL


def test_no_local_domains_means_nothing_is_local():
    _, result = check_forward_path("<user@local.test>", smtputf8=False, authenticated=False, local_domains=set())
    assert _outcome(result) == RELAY
    _, result = check_forward_path("<postmaster>", smtputf8=False, authenticated=False, local_domains=set())
    assert result is Route.LOCAL
