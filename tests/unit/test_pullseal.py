"""The sealed envelope of pull mode (delivery.pullroute): written by the city, verified by the district; anything altered or unsealed is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.pullroute import SealError, seal, unseal

MSG = b"From: a@city.test\r\nTo: b@district.test\r\nSubject: hi\r\n\r\nHello.\r\n"
KEY = "k" * 43


def test_round_trip_below_what_the_city_put_on_top():
    raw = b"Return-Path: <a@city.test>\r\nDelivered-To: pull@city.test\r\n" + seal(
        KEY, "a@city.test", ["b@district.test", "c@district.test"], MSG)
    s = unseal(KEY, raw)
    assert (s.mail_from, s.rcpts, s.data) == ("a@city.test", ("b@district.test", "c@district.test"), MSG)
    assert len(s.mac) == 64


def test_a_return_path_in_the_queued_message_is_dropped_before_sealing():
    s = unseal(KEY, seal(KEY, "", ["b@district.test"], b"Return-Path: <x@y>\r\n" + MSG))
    assert s.data == MSG and s.mail_from == ""


@pytest.mark.parametrize("change", [
    lambda r: r.replace(b"<b@district.test>", b"<boss@district.test>"),
    lambda r: r.replace(b"X-Postroom-Envelope-From: <a@city.test>", b"X-Postroom-Envelope-From: <z@city.test>"),
    lambda r: r.replace(b"Hello.", b"Hullo."),
    lambda r: r.replace(b"rcpts=1", b"rcpts=2"),
    lambda r: r.replace(b"X-Postroom-Envelope:", b"X-Other:"),
    lambda r: r.replace(b"v=1", b"v=2"),
])
def test_anything_altered_is_refused(change):
    raw = seal(KEY, "a@city.test", ["b@district.test"], MSG)
    with pytest.raises(SealError):
        unseal(KEY, change(raw))


def test_another_key_is_refused():
    with pytest.raises(SealError, match="MAC"):
        unseal("another key", seal(KEY, "a@city.test", ["b@district.test"], MSG))


@given(st.binary(max_size=400))
def test_only_seal_error_escapes_on_any_input(raw):
    try:
        unseal(KEY, raw)
    except SealError:
        pass
