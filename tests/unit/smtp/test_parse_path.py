"""parse_path: RFC 5321 §4.1.2 reverse-path and forward-path arguments."""

import pytest

from delivery.envelope import Address
from mailserver.smtp.policy import PolicyError, normalise_domain, parse_path


@pytest.mark.parametrize(
    "path, utf8, expected",
    [
        ("<user@example.org>", False, Address("user", "example.org")),
        ("<User.Name@EXAMPLE.ORG>", False, Address("User.Name", "example.org")),  # local part keeps its case
        ("<user@example.org.>", False, Address("user", "example.org")),
        ('<"user"@example.org>', False, Address("user", "example.org")),
        ('<"a\\"b"@example.org>', False, Address('a"b', "example.org")),
        ('<"john smith"@example.org>', False, Address("john smith", "example.org")),
        ("<@relay.example,@other.example:user@example.org>", False, Address("user", "example.org")),
        ("<user@[192.0.2.1]>", False, Address("user", "[192.0.2.1]")),
        ("<user@[ipv6:2001:DB8:0:0::1]>", False, Address("user", "[IPv6:2001:db8::1]")),
        ("<用户@例子.测试>", True, Address("用户", "xn--fsqu00a.xn--0zwm56d")),
        ("<user@例子.测试>", True, Address("user", "xn--fsqu00a.xn--0zwm56d")),
        ("<u@xn--fsqu00a.xn--0zwm56d>", False, Address("u", "xn--fsqu00a.xn--0zwm56d")),
        ("<e\u0301@example.org>", True, Address("\u00e9", "example.org")),  # NFC
        ("<a!#$%&'*+/=?^_`{|}~-b@example.org>", False, Address("a!#$%&'*+/=?^_`{|}~-b", "example.org")),
        ("<" + "a" * 64 + "@example.org>", False, Address("a" * 64, "example.org")),
        ("\t<user@example.org> ", False, Address("user", "example.org")),
    ],
)
def test_forward_paths(path, utf8, expected):
    assert parse_path(path, utf8) == expected


def test_null_reverse_path():
    assert parse_path("<>", False, reverse=True) == Address("", "")
    assert parse_path("<>", False, reverse=True).is_null


def test_null_forward_path_refused():
    with pytest.raises(PolicyError) as e:
        parse_path("<>", False)
    assert e.value.reply.code == 501


def test_bare_postmaster_only_for_rcpt():
    assert parse_path("<POSTMASTER>", False) == Address("postmaster", "")
    with pytest.raises(PolicyError) as e:
        parse_path("<postmaster>", False, reverse=True)
    assert (e.value.reply.code, e.value.reply.enhanced) == (501, "5.1.7")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "<",
        ">",
        "<<>>",
        "<user>",
        "<user@>",
        "<@>",
        "<user@@example.org>",
        "<user@example..org>",
        "<user@.example.org>",
        "<user@example.org-.>",
        "<user@exa_mple.org>",
        "<user.@example.org>",
        '<"unterminated@example.org>',
        '<"a"b@example.org>',
        '<"a\\\x01"@example.org>',
        "<user@[256.0.0.1]>",
        "<user@[1.2.3]>",
        "<user@[IPv6:zzzz::1]>",
        "<user@[]>",
        "<user@example.org:>",
        "<:user@example.org>",
        "<@:user@example.org>",
        "<@bad_host:user@example.org>",
        "<u@" + "a" * 250 + ".org>",
        "<" + "a" * 250 + "@b.org>",
        "<user@example.org\udcff>",
        "<user@example.org>\r\n",
        "<user\t@example.org>",
    ],
)
def test_syntax_errors(path):
    with pytest.raises(PolicyError) as e:
        parse_path(path, True)
    assert e.value.reply.code == 501


def test_reverse_and_forward_use_their_own_enhanced_codes():
    with pytest.raises(PolicyError) as e:
        parse_path("<bad", False, reverse=True)
    assert e.value.reply.enhanced == "5.1.7"
    with pytest.raises(PolicyError) as e:
        parse_path("<bad", False)
    assert e.value.reply.enhanced == "5.1.3"


def test_non_ascii_needs_smtputf8():
    with pytest.raises(PolicyError) as e:
        parse_path("<用户@example.org>", False)
    assert (e.value.reply.code, e.value.reply.enhanced) == (553, "5.6.7")
    assert parse_path("<用户@example.org>", True).local == "用户"


def test_path_length_limit():
    # RFC 5321 §4.5.3.1.3: 256 octets including the angle brackets.
    local = "a" * 64
    domain = f"{'b' * 63}.{'b' * 63}.{'b' * 57}.org"  # 189 octets
    path = f"<{local}@{domain}>"
    assert len(path) == 256
    assert parse_path(path, False).domain == domain
    with pytest.raises(PolicyError):
        parse_path(f"<{local}@c{domain}>", False)


def test_non_string_input_is_a_policy_error():
    with pytest.raises(PolicyError):
        parse_path(b"<user@example.org>", False)  # type: ignore[arg-type]


def test_normalise_domain():
    assert normalise_domain("Example.ORG.") == "example.org"
    assert normalise_domain("例子.测试") == "xn--fsqu00a.xn--0zwm56d"
    with pytest.raises(ValueError):
        normalise_domain("bad domain")
