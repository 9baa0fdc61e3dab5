"""Official documents and receipts as mail: building the message a district receives, and reading one back (pure, no I/O).

Implementation notes
- A document message is multipart/mixed: a readable text/plain body (manifest.readable), the
  manifest part (manifest.MEDIA_TYPE, base64 so that no relay rewraps or re-encodes its bytes),
  then the files with RFC 2231 names. DKIM signs the whole body without `l=`, so the manifest and
  every file are covered; the receiving side verifies DKIM before it calls `read_document`.
- `read_document` is strict: exactly one manifest part, files exactly as the manifest lists them
  (by SHA-256), and the Subject/From are never trusted over the manifest.
- Urgency travels as `Priority:` (RFC 2156 §5.3.6: urgent for 特急 and 加急) for clients, and as the
  manifest's `urgency`, which is what queues and registration use.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailboxes.charsets import decode_transfer
from mailboxes.mime import BodyPart, ParsedMessage

from .manifest import (MAX_MANIFEST_BYTES, MEDIA_TYPE, RECEIPT_MEDIA_TYPE, Attachment, Document, ManifestError, Receipt,
                       check_files, readable)

MAX_PARTS = 200  # MIME parts looked at in a received document message
RECEIPT_TEXT = {"delivered": "已送达", "registered": "已登记", "signed": "已签收"}


@dataclass(frozen=True)
class Received:
    """A document read from a message: its manifest and its files (checked against the manifest)."""

    document: Document
    files: dict[str, bytes]
    message_id: str


def document_message(doc: Document, files: dict[str, bytes], *, sender: str, to: str, now: datetime,
                     hostname: str, names: dict[str, str] | None = None, message_id: str = "") -> bytes:
    """The message for one recipient organisation (`to`: its document address)."""
    check_files(doc, files)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    tag = f"[{doc.urgency}] " if doc.urgency else ""
    msg["Subject"] = f"{tag}{doc.title}（{doc.document_number}）"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id or make_msgid(domain=hostname)
    if doc.urgency:
        msg["Priority"] = "urgent"  # RFC 2156 §5.3.6
    msg.set_content(readable(doc, names))
    msg.add_attachment(doc.to_json(), maintype="application", subtype=MEDIA_TYPE.split("/", 1)[1],
                       cte="base64", disposition="inline", filename="manifest.json")
    for a in doc.attachments:
        main, sub = a.media_type.split("/", 1)
        msg.add_attachment(files[a.name], maintype=main, subtype=sub, filename=a.name)
    return msg.as_bytes()


def _parts(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = list(msg.walk())[:MAX_PARTS + 1]
    if len(parts) > MAX_PARTS:
        raise ManifestError("message", f"more than {MAX_PARTS} MIME parts")
    return msg, parts


def _one_manifest(parts, media_type: str) -> bytes:
    found = [p for p in parts if p.get_content_type() == media_type]
    if len(found) != 1:
        raise ManifestError("manifest", f"expected exactly one {media_type} part, found {len(found)}")
    data = found[0].get_payload(decode=True)
    if not isinstance(data, bytes):
        raise ManifestError("manifest", "the manifest part has no content")
    return data


def read_document(raw: bytes) -> Received:
    """The document in a received message; ManifestError when it is not a well-formed document message."""
    msg, parts = _parts(raw)
    doc = Document.from_json(_one_manifest(parts, MEDIA_TYPE))
    wanted = {a.name for a in doc.attachments}
    files: dict[str, bytes] = {}
    for p in parts:
        name = p.get_filename()
        if p.is_multipart() or name is None or p.get_content_type() == MEDIA_TYPE:
            continue
        if name in files:
            raise ManifestError(f"files.{name}", "appears twice in the message")
        if name in wanted:
            files[name] = p.get_payload(decode=True) or b""
        else:
            raise ManifestError(f"files.{name}", "not listed in the manifest")
    check_files(doc, files)
    return Received(doc, files, str(msg.get("Message-ID", "")).strip())


MAX_MANIFEST_ENCODED = 2 * MAX_MANIFEST_BYTES  # a manifest part's body as stored (base64 or quoted-printable)


def manifest_part(parsed: ParsedMessage) -> BodyPart:
    """The one manifest part of a stored document message (ManifestError if it has none or several)."""
    parts = parsed.body.parts if parsed.body.is_multipart else (parsed.body,)
    if len(parts) > MAX_PARTS:
        raise ManifestError("message", f"more than {MAX_PARTS} MIME parts")
    manifests = [p for p in parts if p.content_type == MEDIA_TYPE]
    if len(manifests) != 1:
        raise ManifestError("manifest", f"expected exactly one {MEDIA_TYPE} part, found {len(manifests)}")
    m = manifests[0]
    if m.body_end - m.body_start > MAX_MANIFEST_ENCODED:  # refused before it is read or decoded (on the loop)
        raise ManifestError("manifest", f"larger than {MAX_MANIFEST_BYTES} bytes")
    return m


def file_part(parsed: ParsedMessage, doc: Document, index: int) -> tuple[Attachment, BodyPart]:
    """The manifest's ``index``-th file (IndexError past the end) and the one part that carries it."""
    if not 0 <= index < len(doc.attachments):
        raise IndexError(index)
    a = doc.attachments[index]
    parts = parsed.body.parts if parsed.body.is_multipart else (parsed.body,)
    found = [p for p in parts if not p.is_multipart and p.content_type != MEDIA_TYPE and p.filename == a.name]
    if len(found) != 1:
        raise ManifestError(f"files.{a.name}", f"expected once in the message, found {len(found)} times")
    return a, found[0]


def file_data(a: Attachment, part: BodyPart, body: bytes) -> bytes:
    """The file from its part's body (raw[body_start:body_end]), checked against the manifest's size and SHA-256."""
    data = decode_transfer(body, part.encoding)
    if len(data) != a.size or hashlib.sha256(data).hexdigest() != a.sha256:
        raise ManifestError(f"files.{a.name}", "its SHA-256 differs from the manifest's")
    return data


def document_file(raw: bytes, parsed: ParsedMessage, index: int) -> tuple[Document, Attachment, bytes]:
    """The manifest and its ``index``-th file (IndexError past the end) from a stored document message.

    Read through the store's part tree (byte offsets kept at delivery), so only the manifest
    and that one file are decoded, not every file of a message of up to 100 MB; the file is
    checked against the manifest's size and SHA-256 as read_document checks them all. (The
    webmail reads just those two parts from the store: manifest_part, file_part, file_data.)
    """
    m = manifest_part(parsed)
    doc = Document.from_json(decode_transfer(raw[m.body_start:m.body_end], m.encoding))
    a, f = file_part(parsed, doc, index)
    return doc, a, file_data(a, f, raw[f.body_start:f.body_end])


def receipt_message(receipt: Receipt, *, sender: str, to: str, now: datetime, hostname: str,
                    in_reply_to: str = "") -> bytes:
    """A machine-readable receipt with a one-line readable body, threaded under the document message."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"回执：{receipt.document_number} {RECEIPT_TEXT[receipt.kind]}（{receipt.recipient}）"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5: never answered by an out-of-office
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    line = f"{receipt.recipient} {RECEIPT_TEXT[receipt.kind]} {receipt.document_number}"
    if receipt.registration_number:
        line += f"，收文编号 {receipt.registration_number}"
    if receipt.by:
        line += f"，签收人 {receipt.by}"
    msg.set_content(f"{line}。\n{receipt.at.isoformat()}\n")
    msg.add_attachment(receipt.to_json(), maintype="application", subtype=RECEIPT_MEDIA_TYPE.split("/", 1)[1],
                       cte="base64", disposition="inline", filename="receipt.json")
    return msg.as_bytes()


def read_receipt(raw: bytes) -> Receipt:
    _, parts = _parts(raw)
    return Receipt.from_json(_one_manifest(parts, RECEIPT_MEDIA_TYPE))


__all__ = ["Attachment", "Received", "document_file", "document_message", "file_data", "file_part", "manifest_part",
           "read_document", "receipt_message", "read_receipt"]
