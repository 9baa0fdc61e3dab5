"""Reply wire form and envelope types."""

import pytest

from delivery import envelope as env
from delivery.envelope import Address, Envelope, Recipient, Reply


def test_single_line_wire_form():
    assert str(env.UNKNOWN_USER) == "550 5.1.1 Mailbox unavailable"
    assert str(env.RELAY_DENIED) == "554 5.7.1 Relaying denied"


def test_multi_line_wire_form():
    r = Reply(250, "2.0.0", "first\nsecond\nlast")
    assert str(r) == "250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 last"


def test_ok_queued_names_the_id():
    assert str(env.ok_queued("Q123")) == "250 2.0.0 OK queued as Q123"


@pytest.mark.parametrize(
    "reply, code, enhanced",
    [
        (env.UNKNOWN_USER, 550, "5.1.1"),
        (env.RELAY_DENIED, 554, "5.7.1"),
        (env.SENDER_NOT_ALLOWED, 553, "5.7.1"),
        (env.MESSAGE_TOO_BIG, 552, "5.3.4"),
        (env.OVER_QUOTA_TEMP, 452, "4.2.2"),
        (env.OVER_QUOTA_PERM, 552, "5.2.2"),
        (env.AUTH_THROTTLED, 454, "4.7.0"),
        (env.AUTH_FAILED, 535, "5.7.8"),
        (env.OK, 250, "2.0.0"),
        (env.BAD_RECIPIENT_SYNTAX, 501, "5.1.3"),
        (env.BAD_ARGUMENTS, 501, "5.5.4"),
        (env.TEMPORARY_FAILURE, 451, "4.3.0"),
    ],
)
def test_catalogue(reply, code, enhanced):
    assert (reply.code, reply.enhanced) == (code, enhanced)
    assert str(reply).startswith(f"{code} {enhanced} ")


@pytest.mark.parametrize(
    "code, enhanced, text",
    [
        (550, "4.1.1", "class mismatch"),
        (99, "5.1.1", "code out of range"),
        (550, "5.1", "short enhanced code"),
        (550, "5.1.1", "CR\r injection"),
        (550, "5.1.1", "非 ASCII"),
        (550, "5.1.1", "x" * 600),
    ],
)
def test_reply_rejects_bad_values(code, enhanced, text):
    with pytest.raises(ValueError):
        Reply(code, enhanced, text)


def test_reply_classes():
    assert env.OK.is_positive and env.OVER_QUOTA_TEMP.is_transient and env.OVER_QUOTA_PERM.is_permanent


def test_address_forms():
    assert str(Address("", "")) == "" and Address("", "").is_null
    assert str(Address("postmaster", "")) == "postmaster"
    assert Address("Postmaster", "").is_bare_postmaster
    assert str(Address("a b", "x.test")) == '"a b"@x.test'
    assert str(Address('a"b', "x.test")) == '"a\\"b"@x.test'
    assert Address("u", "[192.0.2.1]").is_literal
    assert Address("User", "x.test").key() == "user@x.test"


def test_envelope_and_recipient():
    e = Envelope(mail_from="", rcpt_to=("a@x.test",))
    assert e.is_bounce
    with pytest.raises(TypeError):
        Envelope(mail_from="a@x.test", rcpt_to=["b@x.test"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Envelope(mail_from="a@x.test\r\nRCPT TO:<evil@y>", rcpt_to=("b@x.test",))
    r = Recipient("a@x.test")
    assert r.pending and not r.accepted
    done = r.with_result(env.OK)
    assert done.accepted and r.pending
    assert not r.with_result(env.UNKNOWN_USER).accepted
