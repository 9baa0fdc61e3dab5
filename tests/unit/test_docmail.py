"""Documents and receipts as mail: what the city builds is what the district reads, and anything altered or added is refused."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from bridges.docmail import document_message, manifest_part, read_document, read_receipt, receipt_message
from bridges.manifest import MAX_MANIFEST_BYTES, MEDIA_TYPE, Document, ManifestError, Receipt, describe_file
from mailboxes.ingest import prepare
from mailboxes.mime import ParsedMessage

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=CST)
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40
OFD = b"PK\x03\x04" + b"\x00\xff" * 3000
FILES = {"关于汇算清缴的通知.pdf": PDF, "附件：填报说明.ofd": OFD}


def doc(**over) -> Document:
    obj = {"issuing_organ": ["深圳市地方税务局"], "document_number": "深地税发〔2026〕7号", "title": "关于做好汇算清缴工作的通知",
           "main_recipients": ["futian"], "copy_recipients": ["luohu"], "date": "2026-12-03", "urgency": "特急",
           "attachments": [describe_file(n, d).__dict__ for n, d in FILES.items()]}
    obj.update(over)
    return Document.from_json(obj)


def build(d: Document | None = None, files=FILES) -> bytes:
    return document_message(d or doc(), files, sender="发文 <dispatch@city.test>", to="docs@futian.test", now=NOW,
                            hostname="city.test", names={"futian": "福田区税务局"})


def test_a_document_message_reads_back_byte_exact_with_its_chinese_file_names():
    raw = build()
    got = read_document(raw)
    assert got.document == doc()
    assert got.files == FILES
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Priority"] == "urgent" and msg["Subject"] == "[特急] 关于做好汇算清缴工作的通知（深地税发〔2026〕7号）"
    assert "主送：福田区税务局" in msg.get_body(("plain",)).get_content()
    assert got.message_id == msg["Message-ID"]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))  # RFC 5322 §2.1.1, so no relay rewraps it


def test_files_that_do_not_match_the_manifest_are_refused_when_building():
    with pytest.raises(ManifestError):
        build(files={**FILES, "关于汇算清缴的通知.pdf": PDF + b"!"})


def _swap_manifest(raw: bytes, new_json: bytes) -> bytes:
    old = base64.encodebytes(doc().to_json()).replace(b"\n", b"\r\n")
    assert old in raw
    return raw.replace(old, base64.encodebytes(new_json).replace(b"\n", b"\r\n"))


def test_an_altered_manifest_or_file_or_an_extra_file_is_refused():
    raw = build()
    # A manifest whose hash no longer matches the file it describes.
    forged = doc().to_json().replace(hashlib.sha256(PDF).hexdigest().encode(), b"0" * 64)
    with pytest.raises(ManifestError) as ei:
        read_document(_swap_manifest(raw, forged))
    assert ei.value.field == "files.关于汇算清缴的通知.pdf"
    # A file changed in transit.
    pdf_b64 = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    tampered = raw.replace(pdf_b64[:60], base64.encodebytes(b"%PDF-1.7\nEVIL" + PDF[13:45])[:60].replace(b"\n", b"\r\n"), 1)
    assert tampered != raw
    with pytest.raises(ManifestError):
        read_document(tampered)
    # No manifest, two manifests, a file the manifest does not list.
    plain = email.message_from_bytes(raw, policy=email.policy.default)
    for part in plain.walk():
        if part.get_content_type() == MEDIA_TYPE:
            part.set_type("application/json")
    with pytest.raises(ManifestError, match="found 0"):
        read_document(plain.as_bytes())
    twice = email.message_from_bytes(raw, policy=email.policy.default)
    twice.add_attachment(doc().to_json(), maintype="application", subtype=MEDIA_TYPE.split("/")[1], filename="m2.json")
    with pytest.raises(ManifestError, match="found 2"):
        read_document(twice.as_bytes())
    extra = email.message_from_bytes(raw, policy=email.policy.default)
    extra.add_attachment(PDF, maintype="application", subtype="pdf", filename="未列出.pdf")
    with pytest.raises(ManifestError) as ei:
        read_document(extra.as_bytes())
    assert ei.value.field == "files.未列出.pdf"


def test_not_a_document_at_all_is_refused():
    with pytest.raises(ManifestError):
        read_document(b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n")


def test_receipts_read_back_and_thread_under_the_document():
    r = Receipt("signed", doc().document_number, "深圳市地方税务局", "futian", NOW, by="李四")
    raw = receipt_message(r, sender="docs@futian.test", to="dispatch@city.test", now=NOW, hostname="futian.test",
                          in_reply_to="<d1@city.test>")
    assert read_receipt(raw) == r
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["In-Reply-To"] == "<d1@city.test>" and msg["Auto-Submitted"] == "auto-replied"
    assert "已签收" in msg["Subject"] and "签收人 李四" in msg.get_body(("plain",)).get_content()
    with pytest.raises(ManifestError):
        read_receipt(build())  # a document is not a receipt


def test_a_stored_manifest_part_too_large_to_be_one_is_refused_before_it_is_read():
    """docpages reads the manifest part from the store and decodes it on the event loop: a copy in 收文 whose
    manifest part is megabytes (a forged one with the document's Message-ID) is refused by its stored size."""
    raw = build()
    parsed = ParsedMessage.from_json(prepare(raw).parsed_json)
    assert manifest_part(parsed).content_type == MEDIA_TYPE  # the real one passes
    big = base64.encodebytes(b"{" + b" " * (MAX_MANIFEST_BYTES * 2) + b"}").replace(b"\n", b"\r\n")
    forged = (b"From: a@futian.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
              b"--b\r\nContent-Type: " + MEDIA_TYPE.encode() + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              + big + b"--b--\r\n")
    with pytest.raises(ManifestError, match="larger than"):
        manifest_part(ParsedMessage.from_json(prepare(forged).parsed_json))
