"""Properties of the SMTP door rules: only PolicyError escapes parse_path; no open relay."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.envelope import Reply
from mailserver.smtp.policy import (
    PolicyError,
    Route,
    check_forward_path,
    check_header_from,
    check_recipient,
    parse_path,
)

LOCAL_DOMAINS = {"local.test", "tax.example.cn"}

# Fragments that address tricks are made of, so that generated paths are often nearly valid.
FRAGMENTS = [
    "<", ">", "@", ".", "%", "!", ":", ",", '"', "\\", "[", "]", " ", "\t", "\r", "\n", "\x00",
    "user", "postmaster", "Postmaster", "local.test", "LOCAL.TEST", "local.test.", "tax.example.cn",
    "evil.local.test", "remote.example", "remote.example.", "IPv6:", "2001:db8::1", "192.0.2.1",
    "xn--", "lоcal", "例子.测试", "用户", "\u200b", "\u202e", "\u3000", "ＬＯＣＡＬ．ｔｅｓｔ", "a" * 64, "\udcff",
]  # fmt: skip

fragment_paths = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)
any_text = st.text(max_size=300)
paths = st.one_of(fragment_paths, any_text, fragment_paths.map(lambda s: f"<{s}>"))


@pytest.mark.slow
@settings(max_examples=1500)
@given(path=paths, smtputf8=st.booleans(), reverse=st.booleans())
def test_parse_path_raises_only_policy_error(path, smtputf8, reverse):
    try:
        addr = parse_path(path, smtputf8, reverse=reverse)
    except PolicyError as e:
        assert isinstance(e.reply, Reply) and e.reply.code in (501, 553)
        return
    # What was accepted prints back to a path that parses to the same address.
    again = parse_path(f"<{addr}>", smtputf8, reverse=reverse)
    assert again == addr


@pytest.mark.slow
@settings(max_examples=1500)
@given(path=paths, smtputf8=st.booleans())
def test_unauthenticated_never_relays(path, smtputf8):
    addr, result = check_forward_path(path, smtputf8=smtputf8, authenticated=False, local_domains=LOCAL_DOMAINS)
    assert result is not Route.REMOTE_ALLOWED
    if result is Route.LOCAL:
        assert addr is not None
        assert addr.is_bare_postmaster or addr.domain in LOCAL_DOMAINS
        assert not set("%!@") & set(addr.local)


@settings(max_examples=500)
@given(path=paths, smtputf8=st.booleans(), domains=st.sets(st.sampled_from(sorted(LOCAL_DOMAINS | {"x.test"}))))
def test_check_recipient_unauthenticated_never_remote(path, smtputf8, domains):
    try:
        addr = parse_path(path, smtputf8)
    except PolicyError:
        return
    assert check_recipient(addr, authenticated=False, local_domains=domains) is not Route.REMOTE_ALLOWED


@pytest.mark.slow
@settings(max_examples=300)
@given(message=st.binary(max_size=400) | st.lists(st.sampled_from(FRAGMENTS + ["From: ", "Sender: ", "\r\n", "=?utf-8?b?5byg?="]), max_size=20).map(lambda x: "".join(x).encode("utf-8", "surrogatepass")))
def test_check_header_from_never_crashes(message):
    result = check_header_from(message, login_account="user@local.test", allowed_addresses=set())
    assert result is None or isinstance(result, Reply)
