"""The official-document manifest (application/vnd.postroom.document+json) and receipts: GB/T 9704-2012 elements, validated, as canonical JSON.

Implementation notes
- A document message carries this manifest beside a readable body (../shared/design.md, contracts);
  the receiving side trusts it only after DKIM verification, which covers the part.
- `Document.from_json` is the one way in: every problem names its field (the API turns a
  `ManifestError` into an RFC 9457 problem, the CLI into one line); unknown fields are refused so
  that a typo does not silently drop an element.
- `to_json` is canonical (sorted keys, UTF-8, no spaces), so that the same document always gives
  the same bytes and its hash can be compared across sites.
- Element names follow GB/T 9704-2012 §7: 份号 copy_number, 密级和保密期限 classification and
  classification_period, 紧急程度 urgency, 发文机关 issuing_organ, 发文字号 document_number,
  签发人 signers, 标题 title, 主送机关 main_recipients, 抄送机关 copy_recipients, 成文日期 date,
  印发机关和印发日期 printed_by and printed_on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

MEDIA_TYPE = "application/vnd.postroom.document+json"
RECEIPT_MEDIA_TYPE = "application/vnd.postroom.receipt+json"
VERSION = 1

# GB/T 9704-2012 §7.2.2 密级 (classified documents carry a copy number, §7.2.1); "" is unclassified.
CLASSIFICATIONS = ("", "秘密", "机密", "绝密")
# §7.2.3 紧急程度: "" routine, 加急 urgent, 特急 most urgent. The order is the delivery order, most urgent first.
URGENCIES = ("特急", "加急", "")
# The files a document may carry: PDF, OFD (GB/T 33190) and Word; checked by extension and magic bytes.
FILE_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    ".pdf": ("application/pdf", (b"%PDF-",)),
    ".ofd": ("application/ofd", (b"PK\x03\x04",)),
    ".docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", (b"PK\x03\x04",)),
    ".doc": ("application/msword", (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",)),
}
RECEIPT_KINDS = ("delivered", "registered", "signed")

MAX_TITLE = 200  # characters of 标题
MAX_NAME = 100  # characters of an organ, signer or organisation code
MAX_RECIPIENTS = 200  # 主送 + 抄送 organisations of one document
MAX_FILES = 50
MAX_FILE_NAME = 200  # characters
MAX_PERIOD = 20  # characters of 保密期限 (e.g. "10年", "长期")

# 发文字号 §7.3.1: 机关代字 + 〔year〕 + sequence number without leading zeros + 号 (深地税发〔2012〕12号).
# Half-width and full-width square brackets are accepted and written back as 〔〕.
_NUMBER = re.compile(r"(?P<code>[^\s〔〕\[\]［］]{1,40})[〔\[［](?P<year>\d{4})[〕\]］](?P<seq>[1-9]\d{0,5})号")
_COPY_NUMBER = re.compile(r"\d{6}")  # §7.2.1: six Arabic digits
_ORG = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # an organisation code, as `postroom partner add` names it


class ManifestError(ValueError):
    """A manifest that is not valid; `field` names the element (dotted for nested ones)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class DocumentNumber:
    """发文字号, split: 机关代字, year, sequence."""

    code: str
    year: int
    seq: int

    def __str__(self) -> str:
        return f"{self.code}〔{self.year}〕{self.seq}号"


def parse_number(text: str) -> DocumentNumber:
    m = _NUMBER.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ManifestError("document_number", "must look like 深地税发〔2012〕12号 (代字〔年份〕序号号, no leading zeros)")
    return DocumentNumber(m["code"], int(m["year"]), int(m["seq"]))


@dataclass(frozen=True)
class Attachment:
    """One file of a document, named by its hash so that each site can check what it received."""

    name: str
    media_type: str
    size: int
    sha256: str


def describe_file(name: str, data: bytes) -> Attachment:
    """The manifest entry of a file, after checking that it is a PDF, OFD or Word file by name and content."""
    where = f"files.{name}"
    _check_file_name(where, name)
    ext = name[name.rfind("."):].lower() if "." in name else ""
    if ext not in FILE_TYPES:
        raise ManifestError(where, f"only {', '.join(sorted(FILE_TYPES))} files may be dispatched")
    media_type, magics = FILE_TYPES[ext]
    if not data.startswith(magics):
        raise ManifestError(where, f"the content is not a {ext[1:].upper()} file")
    return Attachment(name, media_type, len(data), hashlib.sha256(data).hexdigest())


def _check_file_name(where: str, name: str) -> None:
    if not name or len(name) > MAX_FILE_NAME or any(c in name for c in "/\\\0\r\n") or name.strip(". ") == "":
        raise ManifestError(where, "a file name without path separators or control characters is required")


@dataclass(frozen=True)
class Document:
    """The GB/T 9704-2012 elements of one official document, as dispatched."""

    issuing_organ: tuple[str, ...]
    document_number: DocumentNumber
    title: str
    main_recipients: tuple[str, ...]
    date: date
    copy_recipients: tuple[str, ...] = ()
    signers: tuple[str, ...] = ()
    copy_number: str = ""
    classification: str = ""
    classification_period: str = ""
    urgency: str = ""
    printed_by: str = ""
    printed_on: date | None = None
    attachments: tuple[Attachment, ...] = field(default=())

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every addressed organisation: 主送 first, then 抄送 (each appears once: from_json refuses overlaps)."""
        return self.main_recipients + self.copy_recipients

    @property
    def priority(self) -> int:
        """0 for 特急, 1 for 加急, 2 for routine: smaller goes first."""
        return URGENCIES.index(self.urgency)

    def to_obj(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["document_number"] = str(self.document_number)
        obj["date"] = self.date.isoformat()
        obj["printed_on"] = self.printed_on.isoformat() if self.printed_on else None
        obj["attachments"] = [asdict(a) for a in self.attachments]
        for k in ("issuing_organ", "main_recipients", "copy_recipients", "signers"):
            obj[k] = list(obj[k])
        return {"version": VERSION, "type": "document", **obj}

    def to_json(self) -> bytes:
        return canonical(self.to_obj())

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> Document:
        obj = _load(data)
        _check_envelope(obj, "document")
        known = {f for f in cls.__dataclass_fields__} | {"version", "type"}
        for k in obj:
            if k not in known:
                raise ManifestError(k, "unknown element")
        classification = _choice(obj, "classification", CLASSIFICATIONS)
        copy_number = _text(obj, "copy_number", 6, required=False)
        if copy_number and not _COPY_NUMBER.fullmatch(copy_number):
            raise ManifestError("copy_number", "份号 is six digits, such as 000001")
        if classification and not copy_number:
            raise ManifestError("copy_number", "a classified document needs 份号 (GB/T 9704-2012 §7.2.1)")
        period = _text(obj, "classification_period", MAX_PERIOD, required=False)
        if period and not classification:
            raise ManifestError("classification_period", "保密期限 needs a 密级")
        main = _orgs(obj, "main_recipients", required=True)
        copy = _orgs(obj, "copy_recipients", required=False)
        both = [c for c in copy if c in main]
        if both:
            raise ManifestError("copy_recipients", f"{both[0]} is already a main recipient (主送)")
        if len(main) + len(copy) > MAX_RECIPIENTS:
            raise ManifestError("copy_recipients", f"at most {MAX_RECIPIENTS} organisations in all")
        number_text = obj.get("document_number")
        doc_number = parse_number(number_text) if isinstance(number_text, str) else parse_number("")
        when = _date(obj, "date", required=True)
        if doc_number.year != when.year:
            raise ManifestError("document_number", f"the year {doc_number.year} differs from 成文日期 {when.isoformat()}")
        printed_on = _date(obj, "printed_on", required=False)
        if printed_on and printed_on < when:
            raise ManifestError("printed_on", "印发日期 cannot be before 成文日期")
        return cls(
            issuing_organ=_names(obj, "issuing_organ", required=True),
            document_number=doc_number,
            title=_text(obj, "title", MAX_TITLE, required=True),
            main_recipients=main,
            date=when,
            copy_recipients=copy,
            signers=_names(obj, "signers", required=False),
            copy_number=copy_number,
            classification=classification,
            classification_period=period,
            urgency=_choice(obj, "urgency", URGENCIES),
            printed_by=_text(obj, "printed_by", MAX_NAME, required=False),
            printed_on=printed_on,
            attachments=_attachments(obj),
        )


@dataclass(frozen=True)
class Receipt:
    """A receipt travelling back to the issuing site: delivered, registered (with the local number) or signed for."""

    kind: str
    document_number: DocumentNumber
    issuing_organ: str
    recipient: str  # the organisation code of the receiving site
    at: datetime
    registration_number: str = ""
    by: str = ""  # who signed for it (a registrar's name), for kind "signed"

    def to_json(self) -> bytes:
        obj = asdict(self)
        obj["document_number"] = str(self.document_number)
        obj["at"] = self.at.isoformat()
        return canonical({"version": VERSION, "type": "receipt", **obj})

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> Receipt:
        obj = _load(data)
        _check_envelope(obj, "receipt")
        kind = obj.get("kind")
        if kind not in RECEIPT_KINDS:
            raise ManifestError("kind", f"must be one of {', '.join(RECEIPT_KINDS)}")
        at = obj.get("at")
        try:
            when = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise ManifestError("at", "an ISO 8601 time with its offset is required")
        number = obj.get("document_number")
        return cls(kind=kind, document_number=parse_number(number if isinstance(number, str) else ""),
                   issuing_organ=_text(obj, "issuing_organ", MAX_NAME, required=True),
                   recipient=_org(obj.get("recipient"), "recipient"), at=when,
                   registration_number=_text(obj, "registration_number", MAX_NAME, required=kind == "registered"),
                   by=_text(obj, "by", MAX_NAME, required=kind == "signed"))


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


MAX_MANIFEST_BYTES = 256 * 1024  # a manifest is a few KB; anything larger is refused before parsing


def _load(data: bytes | str | dict) -> dict:
    if isinstance(data, dict):
        return data
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError("manifest", f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError("manifest", f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise ManifestError("manifest", "must be a JSON object")
    return obj


def _check_envelope(obj: dict, kind: str) -> None:
    if obj.get("version", VERSION) != VERSION:
        raise ManifestError("version", f"version {obj.get('version')!r} is not supported (this site reads {VERSION})")
    if obj.get("type", kind) != kind:
        raise ManifestError("type", f"expected a {kind}")


def _text(obj: dict, name: str, limit: int, *, required: bool) -> str:
    v = obj.get(name)
    if v is None or v == "":
        if required:
            raise ManifestError(name, "is required")
        return ""
    if not isinstance(v, str):
        raise ManifestError(name, "must be text")
    v = v.strip()
    if not v and required:
        raise ManifestError(name, "is required")
    if len(v) > limit:
        raise ManifestError(name, f"at most {limit} characters")
    if any(ord(c) < 32 for c in v):
        raise ManifestError(name, "control characters are not allowed")
    return v


def _choice(obj: dict, name: str, allowed: tuple[str, ...]) -> str:
    v = obj.get(name) or ""
    if v not in allowed:
        raise ManifestError(name, "must be one of " + ", ".join(repr(a) for a in allowed))
    return v


def _list(obj: dict, name: str, *, required: bool) -> list:
    v = obj.get(name)
    if v is None:
        v = []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ManifestError(name, "must be a list")
    if required and not v:
        raise ManifestError(name, "at least one is required")
    return v


def _names(obj: dict, name: str, *, required: bool) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(_list(obj, name, required=required)):
        where = f"{name}.{i}"
        if not isinstance(item, str) or not item.strip():
            raise ManifestError(where, "must be non-empty text")
        out.append(_text({where: item}, where, MAX_NAME, required=True))
    return tuple(out)


def _org(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _ORG.fullmatch(v):
        raise ManifestError(where, "an organisation code (letters, digits, . _ -) is required")
    return v


def _orgs(obj: dict, name: str, *, required: bool) -> tuple[str, ...]:
    items = _list(obj, name, required=required)
    if len(items) > MAX_RECIPIENTS:
        raise ManifestError(name, f"at most {MAX_RECIPIENTS} organisations")
    return tuple(dict.fromkeys(_org(v, f"{name}.{i}") for i, v in enumerate(items)))


def _date(obj: dict, name: str, *, required: bool) -> date | None:
    v = obj.get(name)
    if v is None or v == "":
        if required:
            raise ManifestError(name, "is required (YYYY-MM-DD)")
        return None
    try:
        return date.fromisoformat(v) if isinstance(v, str) and len(v) == 10 else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name: str) -> date:
    raise ManifestError(name, "must be a date YYYY-MM-DD")


def _attachments(obj: dict) -> tuple[Attachment, ...]:
    items = _list(obj, "attachments", required=False)
    if len(items) > MAX_FILES:
        raise ManifestError("attachments", f"at most {MAX_FILES} files")
    out, names = [], set()
    for i, a in enumerate(items):
        where = f"attachments.{i}"
        if not isinstance(a, dict) or set(a) != {"name", "media_type", "size", "sha256"}:
            raise ManifestError(where, "needs exactly name, media_type, size and sha256")
        _check_file_name(f"{where}.name", a["name"] if isinstance(a["name"], str) else "")
        if a["name"] in names:
            raise ManifestError(f"{where}.name", "two files have this name")
        names.add(a["name"])
        if a["media_type"] not in {t for t, _ in FILE_TYPES.values()}:
            raise ManifestError(f"{where}.media_type", "only PDF, OFD and Word files")
        if not isinstance(a["size"], int) or isinstance(a["size"], bool) or a["size"] < 0:
            raise ManifestError(f"{where}.size", "a byte count is required")
        if not isinstance(a["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", a["sha256"]):
            raise ManifestError(f"{where}.sha256", "64 lowercase hex digits")
        out.append(Attachment(a["name"], a["media_type"], a["size"], a["sha256"]))
    return tuple(out)


def check_files(doc: Document, files: dict[str, bytes]) -> None:
    """The received files are exactly the manifest's, byte for byte (by SHA-256 and size)."""
    listed = {a.name: a for a in doc.attachments}
    for name in files.keys() - listed.keys():
        raise ManifestError(f"files.{name}", "not listed in the manifest")
    for name, a in listed.items():
        data = files.get(name)
        if data is None:
            raise ManifestError(f"files.{name}", "listed in the manifest but missing")
        if len(data) != a.size or hashlib.sha256(data).hexdigest() != a.sha256:
            raise ManifestError(f"files.{name}", "its SHA-256 differs from the manifest's")


def readable(doc: Document, names: dict[str, str] | None = None) -> str:
    """The human-readable body beside the manifest: the elements in Chinese, in the order of the 版头 and 版记.

    `names` maps organisation codes to their names where this site knows them.
    """
    names = names or {}

    def orgs(codes: tuple[str, ...]) -> str:
        return "、".join(names.get(c, c) for c in codes)

    lines = []
    if doc.copy_number:
        lines.append(f"份号：{doc.copy_number}")
    if doc.classification:
        lines.append(f"密级：{doc.classification}" + (f"★{doc.classification_period}" if doc.classification_period else ""))
    if doc.urgency:
        lines.append(f"紧急程度：{doc.urgency}")
    lines += [f"发文机关：{'、'.join(doc.issuing_organ)}", f"发文字号：{doc.document_number}"]
    if doc.signers:
        lines.append(f"签发人：{'、'.join(doc.signers)}")
    lines += [f"标题：{doc.title}", f"主送：{orgs(doc.main_recipients)}"]
    if doc.copy_recipients:
        lines.append(f"抄送：{orgs(doc.copy_recipients)}")
    lines.append(f"成文日期：{doc.date.year}年{doc.date.month}月{doc.date.day}日")
    if doc.printed_by or doc.printed_on:
        when = f"{doc.printed_on.year}年{doc.printed_on.month}月{doc.printed_on.day}日印发" if doc.printed_on else ""
        lines.append(f"印发：{doc.printed_by} {when}".rstrip())
    if doc.attachments:
        lines.append("附件：")
        lines += [f"  {i}. {a.name}（{a.size} 字节，SHA-256 {a.sha256}）" for i, a in enumerate(doc.attachments, 1)]
    lines += ["", "本邮件为公文传输邮件，所附清单（application/vnd.postroom.document+json）经 DKIM 签名，"
              "由收文单位的 Postroom 自动登记。",
              "This is an official document dispatched by Postroom; the receiving site registers it from the signed manifest."]
    return "\n".join(lines) + "\n"
