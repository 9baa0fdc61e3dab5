"""Queue priority of submitted mail: only our users and services may ask, only the manifest gives 特急."""

from __future__ import annotations

from delivery.priority import FLASH, IMMEDIATE, ROUTINE, from_headers, of_submission

URGENT = b"From: a@city.test\r\nPriority: urgent\r\nSubject: x\r\n\r\nPriority: urgent\r\n"


def test_headers_raise_to_immediate_at_most():
    assert from_headers(URGENT) == IMMEDIATE
    assert from_headers(b"X-Priority: 1 (Highest)\r\n\r\nbody") == IMMEDIATE
    assert from_headers(b"X-Priority: 2\r\n\r\nbody") == IMMEDIATE
    assert from_headers(b"X-Priority: 3 (Normal)\r\nPriority: normal\r\n\r\n") == ROUTINE
    assert from_headers(b"Subject: x\r\n\r\nPriority: urgent\r\n") == ROUTINE  # the body is not the header


def test_only_trusted_origins_may_ask():
    assert of_submission(URGENT, "submission", None) == IMMEDIATE
    assert of_submission(URGENT, "webmail", None) == IMMEDIATE
    assert of_submission(URGENT, "bridge", FLASH) == FLASH  # the document manifest's 特急
    assert of_submission(URGENT, "bridge", ROUTINE) == ROUTINE  # what the caller asked wins over the header
    for stranger in ("smtp", "dsn", "autoreply"):
        assert of_submission(URGENT, stranger, FLASH) == ROUTINE
    assert of_submission(b"Subject: x\r\n\r\n", "bridge", 7) == ROUTINE
