"""Differential corpus test: ENVELOPE, BODYSTRUCTURE, sections and decoded values of CPython's email test messages
and of Chinese GBK / GB2312 / GB18030 / RFC 2231 messages, against values written by hand (corpus_expected.py)."""

from __future__ import annotations

import pytest

from mailboxes.charsets import decoded_params
from mailboxes.mime import find_part, parse_message, section_range
from mailserver.imap.fetch import binary_bytes
from mailserver.imap.render import bodystructure_bytes, envelope_bytes
from tests.unit.mime.corpus_expected import CASES, load, section


@pytest.fixture(params=sorted(CASES), ids=lambda name: name.rsplit("/", 1)[-1])
def case(request):
    name = request.param
    raw = load(name)
    return raw, parse_message(raw), CASES[name]


def test_envelope(case):
    _raw, m, want = case
    assert envelope_bytes(m.envelope) == want["envelope"]


def test_bodystructure(case):
    _raw, m, want = case
    assert bodystructure_bytes(m.body) == want["bodystructure"]


def test_bodystructure_survives_the_stored_json(case):
    _raw, m, want = case
    assert bodystructure_bytes(type(m).from_json(m.to_json()).body) == want["bodystructure"]


def test_sections(case):
    raw, m, want = case
    got = {}
    for spec in want["sections"]:
        path, text = section(spec)
        span = section_range(m.body, path, text)
        got[spec] = None if span is None else raw[span[0]:span[1]]
    assert got == want["sections"]


def test_binary_sections(case):
    raw, m, want = case
    for spec, data in want.get("binary", {}).items():
        assert binary_bytes(raw, m.body, section(spec)[0]) == data, spec


def test_decoded_values(case):
    _raw, m, want = case
    if "subject" in want:
        assert m.envelope.subject_decoded == want["subject"]
    for field, names in want.get("names", {}).items():
        assert [a.name_decoded for a in getattr(m.envelope, field + ("_" if field == "from" else ""))] == names
    for path, params in want.get("params", {}).items():
        assert decoded_params(find_part(m.body, path).params if path else m.body.params) == params
    for path, filename in want.get("filenames", {}).items():
        assert find_part(m.body, path).filename == filename
    if "inner_subject" in want:
        rfc822 = next(p for p in m.body.parts if p.message is not None)
        assert rfc822.message.envelope.subject_decoded == want["inner_subject"]
