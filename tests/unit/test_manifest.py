"""The document manifest: GB/T 9704-2012 elements validated field by field, canonical JSON, files checked by hash, receipts."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.manifest import (MAX_RECIPIENTS, Document, DocumentNumber, ManifestError, Receipt, check_files,
                              describe_file, parse_number, readable)

PDF = b"%PDF-1.7\n" + b"x" * 1000
DOCX = b"PK\x03\x04" + b"y" * 500


def good(**over) -> dict:
    obj = {
        "issuing_organ": ["深圳市地方税务局"],
        "document_number": "深地税发〔2012〕12号",
        "title": "关于做好2012年度个人所得税汇算清缴工作的通知",
        "main_recipients": ["futian", "luohu"],
        "copy_recipients": ["nanshan"],
        "date": "2012-03-05",
        "signers": ["张三"],
        "urgency": "加急",
        "printed_by": "深圳市地方税务局办公室",
        "printed_on": "2012-03-06",
        "attachments": [{"name": "通知.pdf", "media_type": "application/pdf", "size": len(PDF),
                         "sha256": hashlib.sha256(PDF).hexdigest()}],
    }
    obj.update(over)
    return {k: v for k, v in obj.items() if v is not ...}


def test_a_valid_manifest_round_trips_to_the_same_canonical_bytes():
    doc = Document.from_json(json.dumps(good()))
    assert doc.document_number == DocumentNumber("深地税发", 2012, 12)
    assert doc.recipients == ("futian", "luohu", "nanshan")  # 主送 first, each organisation once
    assert doc.priority == 1
    raw = doc.to_json()
    assert Document.from_json(raw) == doc and Document.from_json(raw).to_json() == raw
    assert "深地税发〔2012〕12号".encode() in raw  # UTF-8, not \\u escapes
    assert json.loads(raw)["type"] == "document" and json.loads(raw)["version"] == 1


@pytest.mark.parametrize("text,want", [
    ("深地税发〔2012〕12号", ("深地税发", 2012, 12)),
    ("深地税发[2012]12号", ("深地税发", 2012, 12)),  # half-width brackets typed by hand
    ("深地税发［2012］120号", ("深地税发", 2012, 120)),
    (" 福税函〔2026〕1号 ", ("福税函", 2026, 1)),
])
def test_document_numbers_parse_and_print_in_the_standard_form(text, want):
    n = parse_number(text)
    assert (n.code, n.year, n.seq) == want
    assert str(n) == f"{want[0]}〔{want[1]}〕{want[2]}号"


@pytest.mark.parametrize("text", ["深地税发〔2012〕012号", "深地税发〔12〕12号", "深地税发〔2012〕12", "〔2012〕12号",
                                  "深地税发〔2012〕第12号", "", "深地税发 〔2012〕12号", "x" * 50 + "〔2012〕1号"])
def test_malformed_document_numbers_are_refused_naming_the_field(text):
    with pytest.raises(ManifestError) as ei:
        parse_number(text)
    assert ei.value.field == "document_number"


# Every element wrong in turn: the error names it.
WRONG = [
    ("issuing_organ", []), ("issuing_organ", [""]), ("issuing_organ", [3]), ("issuing_organ", ...),
    ("document_number", "12号"), ("document_number", 12), ("document_number", ...),
    ("title", ""), ("title", "标" * 201), ("title", ["x"]), ("title", "a\x07b"), ("title", ...),
    ("main_recipients", []), ("main_recipients", ["福田 区"]), ("main_recipients", [None]), ("main_recipients", ...),
    ("main_recipients", {"a": 1}),
    ("copy_recipients", ["bad/org"]), ("copy_recipients", ["luohu"]),
    ("date", "2012/03/05"), ("date", "2012-02-30"), ("date", 20120305), ("date", ...),
    ("signers", [""]), ("signers", 5),
    ("copy_number", "12"), ("copy_number", "abcdef"),
    ("classification", "内部"), ("classification_period", "10年"),
    ("urgency", "急"), ("urgency", "urgent"),
    ("printed_by", 7), ("printed_on", "2012-03-01"), ("printed_on", "tomorrow"),
    ("attachments", "x.pdf"), ("attachments", [{"name": "a.pdf"}]),
    ("attachments", [{"name": "../a.pdf", "media_type": "application/pdf", "size": 1, "sha256": "0" * 64}]),
    ("attachments", [{"name": "a.exe", "media_type": "application/x-msdownload", "size": 1, "sha256": "0" * 64}]),
    ("attachments", [{"name": "a.pdf", "media_type": "application/pdf", "size": -1, "sha256": "0" * 64}]),
    ("attachments", [{"name": "a.pdf", "media_type": "application/pdf", "size": 1, "sha256": "XYZ"}]),
    ("unknown_element", "x"), ("version", 2), ("type", "receipt"),
]


@pytest.mark.parametrize("name,value", WRONG, ids=[f"{n}-{i}" for i, (n, _) in enumerate(WRONG)])
def test_each_wrong_element_is_refused_with_its_name(name, value):
    with pytest.raises(ManifestError) as ei:
        Document.from_json(good(**{name: value}))
    assert ei.value.field.split(".")[0] == name, ei.value


def test_classified_documents_need_a_copy_number_and_the_year_must_match_the_date():
    with pytest.raises(ManifestError, match="份号") as ei:
        Document.from_json(good(classification="秘密"))
    assert ei.value.field == "copy_number"
    doc = Document.from_json(good(classification="秘密", copy_number="000001", classification_period="1年"))
    assert "密级：秘密★1年" in readable(doc)
    with pytest.raises(ManifestError) as ei:
        Document.from_json(good(date="2013-01-04"))
    assert ei.value.field == "document_number"
    with pytest.raises(ManifestError) as ei:
        Document.from_json(good(main_recipients=[f"org{i}" for i in range(MAX_RECIPIENTS + 1)]))
    assert ei.value.field == "main_recipients"


def test_not_json_too_big_and_not_an_object_are_refused():
    for raw in (b"{", b"[1,2]", b"\xff\xfe", b" " * (300 * 1024)):
        with pytest.raises(ManifestError) as ei:
            Document.from_json(raw)
        assert ei.value.field == "manifest"


def test_files_are_checked_by_type_and_by_hash():
    a = describe_file("通知.pdf", PDF)
    assert (a.media_type, a.size, a.sha256) == ("application/pdf", len(PDF), hashlib.sha256(PDF).hexdigest())
    assert describe_file("附件1.DOCX", DOCX).media_type.endswith("wordprocessingml.document")
    for name, data in (("a.pdf", DOCX), ("a.exe", b"MZ"), ("a", PDF), ("dir/a.pdf", PDF), ("..", PDF)):
        with pytest.raises(ManifestError):
            describe_file(name, data)
    doc = Document.from_json(good())
    check_files(doc, {"通知.pdf": PDF})
    for files in ({}, {"通知.pdf": PDF[:-1] + b"!"}, {"通知.pdf": PDF, "extra.pdf": PDF}):
        with pytest.raises(ManifestError) as ei:
            check_files(doc, files)
        assert ei.value.field.startswith("files.")


def test_the_readable_body_shows_the_elements_in_chinese():
    text = readable(Document.from_json(good()), {"futian": "福田区税务局"})
    for part in ("紧急程度：加急", "发文字号：深地税发〔2012〕12号", "签发人：张三", "主送：福田区税务局、luohu",
                 "抄送：nanshan", "成文日期：2012年3月5日", "印发：深圳市地方税务局办公室 2012年3月6日印发",
                 "1. 通知.pdf"):
        assert part in text


def test_receipts_round_trip_and_need_what_their_kind_needs():
    at = datetime(2026, 12, 4, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    r = Receipt("registered", parse_number("深地税发〔2012〕12号"), "深圳市地方税务局", "futian", at,
                registration_number="福收〔2012〕88号")
    assert Receipt.from_json(r.to_json()) == r
    obj = json.loads(r.to_json())
    for field_name, value in (("kind", "read"), ("at", "2026-12-04T09:30:00"), ("registration_number", ""),
                              ("recipient", "a b"), ("document_number", "x"), ("type", "document")):
        with pytest.raises(ManifestError) as ei:
            Receipt.from_json({**obj, field_name: value})
        assert ei.value.field == field_name
    with pytest.raises(ManifestError) as ei:
        Receipt.from_json({**obj, "kind": "signed"})
    assert ei.value.field == "by"


_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=30)
_org = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(organ=st.lists(_text, min_size=1, max_size=3), code=st.from_regex(r"[\u4e00-\u9fa5]{2,6}", fullmatch=True),
       day=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), seq=st.integers(1, 99999),
       title=_text, main=st.lists(_org, min_size=1, max_size=5, unique=True), copy=st.lists(_org, max_size=5),
       urgency=st.sampled_from(["", "加急", "特急"]))
def test_any_valid_document_round_trips(organ, code, day, seq, title, main, copy, urgency):
    doc = Document.from_json({"issuing_organ": organ, "document_number": f"{code}〔{day.year}〕{seq}号", "title": title,
                              "main_recipients": main, "copy_recipients": [c for c in copy if c not in main],
                              "date": day.isoformat(),
                              "urgency": urgency})
    assert Document.from_json(doc.to_json()) == doc
    assert doc.recipients == tuple(dict.fromkeys(main + [c for c in copy if c not in main]))


def test_the_manifest_example_in_the_operators_guide_is_valid():
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "documents.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"```json\n(.*?)```", guide, re.S).group(1))
    doc = Document.from_json({**example, "attachments": []})
    assert str(doc.document_number) == "深地税发〔2026〕7号" and doc.urgency == "特急"
