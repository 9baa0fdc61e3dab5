"""DKIM sign → verify with locally trusted keys; never the network."""

import re

import pytest

from delivery import dkim
from delivery.dkim import DkimResult, KeyLookupError

DOMAIN = "tax.example.cn"
SELECTOR = "s2024"
MESSAGE = (
    b"From: Zhang San <zhang.san@tax.example.cn>\r\n"
    b"To: li.si@district.example.cn\r\n"
    b"Subject: test\r\n"
    b"Date: Wed, 01 May 2024 10:00:00 +0800\r\n"
    b"Message-ID: <m1@tax.example.cn>\r\n"
    b"\r\n"
    b"Hello,\r\nthis is the body.\r\n"
)


@pytest.fixture(scope="module")
def keypair():
    return dkim.generate_key(DOMAIN, SELECTOR, bits=2048)


@pytest.fixture(scope="module")
def signed(keypair):
    private_pem, _ = keypair
    return dkim.sign(MESSAGE, DOMAIN, SELECTOR, private_pem) + MESSAGE


@pytest.fixture
def trusted(keypair):
    return {(DOMAIN, SELECTOR): keypair[1]}


def no_network(name: str):
    raise AssertionError(f"DNS must not be queried in this test: {name}")


def test_generate_key(keypair):
    private_pem, txt = keypair
    assert private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert txt.startswith("v=DKIM1; k=rsa; p=MII")
    assert dkim.dns_record_name(DOMAIN, SELECTOR) == "s2024._domainkey.tax.example.cn"
    line = dkim.zone_file_record(DOMAIN, SELECTOR, txt)
    assert line.startswith('s2024._domainkey.tax.example.cn. IN TXT ( "v=DKIM1;')
    assert all(len(chunk) <= 255 for chunk in line.split('"')[1::2])


def test_generate_key_refuses_bad_input():
    with pytest.raises(ValueError):
        dkim.generate_key(DOMAIN, SELECTOR, bits=512)
    with pytest.raises(ValueError):
        dkim.generate_key("bad domain", SELECTOR)
    with pytest.raises(ValueError):
        dkim.generate_key(DOMAIN, "sel;x")


def test_sign_returns_a_header_line(signed):
    header = signed[: signed.index(b"From:")]
    assert header.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=tax.example.cn;")
    assert header.endswith(b"\r\n") and b" s=s2024;" in header
    assert b"h=from:from:sender" in re.sub(rb"\s+", b"", header)  # From is oversigned


def test_sign_verify_pass(signed, trusted):
    assert dkim.verify(signed, trusted, dns_lookup=no_network) == DkimResult("pass", DOMAIN, SELECTOR, "")


def test_trusted_keys_are_case_and_dot_insensitive(signed, keypair):
    assert dkim.verify(signed, {("TAX.EXAMPLE.CN.", "S2024"): keypair[1]}).result == "pass"


def test_relaxed_canonicalization_survives_refolding(signed, trusted):
    refolded = signed.replace(b"Subject: test", b"Subject:   test  ").replace(b"is the body.", b"is  the body.   ")
    assert dkim.verify(refolded, trusted).result == "pass"


def test_tampered_body_fails(signed, trusted):
    tampered = signed.replace(b"this is the body.", b"this is another body.")
    result = dkim.verify(tampered, trusted, dns_lookup=no_network)
    assert (result.result, result.domain, result.selector) == ("fail", DOMAIN, SELECTOR)


def test_tampered_header_fails(signed, trusted):
    tampered = signed.replace(b"Subject: test", b"Subject: pay now")
    assert dkim.verify(tampered, trusted).result == "fail"


def test_added_second_from_fails(signed, trusted):
    tampered = signed.replace(b"To: li.si", b"From: boss@tax.example.cn\r\nTo: li.si")
    assert dkim.verify(tampered, trusted).result == "fail"


def test_unknown_key_without_lookup_is_permerror(signed):
    result = dkim.verify(signed, {})
    assert result.result == "permerror" and result.reason == "no key for signature"


def test_unknown_key_lookup_none_is_permerror(signed):
    asked = []

    def lookup(name):
        asked.append(name)
        return None

    assert dkim.verify(signed, {}, dns_lookup=lookup).result == "permerror"
    assert asked == ["s2024._domainkey.tax.example.cn"]


def test_lookup_serves_key(signed, keypair):
    assert dkim.verify(signed, {}, dns_lookup=lambda name: keypair[1]).result == "pass"


def test_lookup_failure_is_temperror(signed):
    def lookup(name):
        raise KeyLookupError("SERVFAIL")

    result = dkim.verify(signed, {}, dns_lookup=lookup)
    assert result.result == "temperror" and "SERVFAIL" in result.reason


def test_wrong_key_fails(signed):
    _, other_txt = dkim.generate_key(DOMAIN, SELECTOR, bits=1024)
    assert dkim.verify(signed, {(DOMAIN, SELECTOR): other_txt}).result == "fail"


def test_malformed_key_record_is_permerror(signed):
    result = dkim.verify(signed, {(DOMAIN, SELECTOR): "v=DKIM1; k=rsa; p=!!notbase64"})
    assert result.result == "permerror"


def test_unsigned_is_none():
    assert dkim.verify(MESSAGE, {}, dns_lookup=no_network) == DkimResult("none", reason="message not signed")


def test_garbage_signature_is_permerror():
    message = b"DKIM-Signature: v=1; a=rsa-sha256; d=x\r\n" + MESSAGE
    assert dkim.verify(message, {}, dns_lookup=no_network).result == "permerror"


def test_verify_all_reports_each_signature(signed, trusted, keypair):
    second = dkim.sign(signed, "district.example.cn", "d1", keypair[0]) + signed
    results = dkim.verify_all(second, trusted)
    assert [r.result for r in results] == ["permerror", "pass"]
    assert dkim.verify(second, trusted).result == "pass"


def test_authentication_results_header():
    ok = DkimResult("pass", DOMAIN, SELECTOR)
    assert dkim.authentication_results_header("mx.tax.example.cn", ok) == (
        b"Authentication-Results: mx.tax.example.cn;\r\n\tdkim=pass header.d=tax.example.cn header.s=s2024\r\n"
    )
    bad = DkimResult("fail", DOMAIN, SELECTOR, 'body hash "did" not verify\r\nX: y')
    none = DkimResult("none")
    header = dkim.authentication_results_header("mx.tax.example.cn", [bad, none])
    assert header == (
        b"Authentication-Results: mx.tax.example.cn;\r\n"
        b'\tdkim=fail reason="body hash did not verify X: y" header.d=tax.example.cn header.s=s2024;\r\n'
        b"\tdkim=none\r\n"
    )
    with pytest.raises(ValueError):
        dkim.authentication_results_header("bad id;", ok)


def test_authentication_results_round_trip(signed, trusted):
    header = dkim.authentication_results_header("mx.tax.example.cn", dkim.verify(signed, trusted))
    # Prepending our A-R header (not in h=) keeps the signature valid.
    assert dkim.verify(header + signed, trusted).result == "pass"


def test_malformed_message_is_permerror():
    # dkimpy raises IndexError on a leading continuation line; we answer permerror.
    assert dkim.verify(b" DKIM-Signature: v=1\r\nFrom: a@x.test\r\n\r\nx\r\n", {}).result == "permerror"


def test_authserv_id_is_read_through_comments_quotes_and_folding():
    from delivery.accept import authserv_id
    assert authserv_id(b" mail.city.test; dkim=pass") == "mail.city.test"
    assert authserv_id(b' "mail.city.test"; dkim=pass') == "mail.city.test"
    assert authserv_id(b" (a (nested) comment) MAIL.City.Test.; dkim=pass") == "mail.city.test"
    assert authserv_id(b"\r\n\tmail.city.test 1; dkim=pass") == "mail.city.test"
    assert authserv_id(b" mail.city.test(x); dkim=pass") == "mail.city.test"
    assert authserv_id(b" other.example; dkim=pass") == "other.example"


def test_a_from_in_our_domains_needs_a_passing_signature_at_or_above_it():
    from delivery.accept import own_domain_claim
    from delivery.dkim import DkimResult

    def claim(from_: str, *results: DkimResult):
        data = f"From: {from_}\r\nSubject: x\r\n\r\nbody\r\n".encode()
        return own_domain_claim(data, {"city.test", "sub.city.test"}, results or (DkimResult("none"),))

    assert claim("a@other.example") is None
    assert claim("a@city.test").code == 550
    assert claim("a@city.test", DkimResult("pass", "city.test")) is None
    assert claim("a@sub.city.test", DkimResult("pass", "city.test")) is None  # relaxed: a parent's d= aligns
    assert claim("a@city.test", DkimResult("pass", "sub.city.test")).code == 550  # a child's does not
    assert claim("a@city.test", DkimResult("pass", "evilcity.test")).code == 550
    assert claim("a@city.test", DkimResult("fail", "city.test")).code == 550
    assert claim("a@other.example, b@city.test", DkimResult("pass", "other.example")).code == 550
