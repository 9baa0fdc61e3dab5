"""Building outgoing mail for compose, reply, reply-all and forward: the RFC 5322 message and the form's prefilled values.

Pure functions (no I/O): the view hands in the account, the form and the original message;
what comes out is handed to delivery's one submit() like any SMTP submission.
"""

from __future__ import annotations

import email
import email.policy
import mimetypes
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import parse_qs, urlencode

from mailboxes.headers import parse_addresses
from mailboxes.mime import Envelope, ParsedMessage
from mailboxes.model import Account

from . import richtext

MAX_RECIPIENTS = 100  # To, Cc and Bcc together, per message from the webmail
MAX_SUBJECT_CHARS = 998  # RFC 5322 §2.1.1 line limit
MAX_BODY_CHARS = 1 << 20
QUOTE_CHARS = 64 << 10  # of the original text quoted in a reply or forward


class ComposeError(ValueError):
    """The form cannot be sent as it is; `key` names the message for the user, `detail` what was wrong."""

    def __init__(self, key: str, detail: str = "", *, status: int = 400) -> None:
        super().__init__(key)
        self.key = key
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


# A saved draft remembers what it answers or forwards (only in Drafts: a sent message never carries it).
DRAFT_LINK_HEADER = "X-Postroom-Draft-Source"
MAX_LINK_CHARS = 2048


@dataclass(frozen=True)
class DraftLink:
    """The compose mode of a draft and, for a reply, the original it answers (folder name, uid) to flag \\Answered."""

    mode: str = "new"
    folder: str = ""
    uid: str = ""

    def header(self) -> str:
        return urlencode({"mode": self.mode, "folder": self.folder, "uid": self.uid})

    @classmethod
    def parse(cls, value: str) -> DraftLink:
        q = parse_qs(value[:MAX_LINK_CHARS])
        mode, folder, uid = (q.get(k, [""])[0] for k in ("mode", "folder", "uid"))
        return cls(mode or "new", folder, uid if uid.isdigit() else "")


@dataclass(frozen=True)
class Draft:
    """The compose form's values."""

    to: str = ""
    cc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    body_html: str = ""  # from the rich-text editor; cleaned (richtext.clean) before it is used
    bcc: str = ""


def recipients(field: str) -> list[str]:
    """The addresses of a To or Cc field (one parser: mailboxes.headers); ComposeError when one is not an address."""
    out = []
    text = field.replace(";", ",").replace("\n", ",").replace("\r", ",")
    if not text.strip():
        return out
    for a in parse_addresses(text):
        if a.is_group_start or a.is_group_end:
            continue
        spec = a.addr_spec
        if spec is None or not a.mailbox or not a.host or "." not in a.host or spec.startswith("MISSING"):
            raise ComposeError("bad_address", a.mailbox or "")
        if "MISSING_" in spec:
            raise ComposeError("bad_address", spec)
        out.append(spec)
    return out


def build(account: Account, draft: Draft, *, hostname: str, now: datetime, uploads: list[Upload] = (),
          forwarded: bytes | None = None, forwarded_name: str = "message.eml",
          unsent: bool = False, link: DraftLink | None = None) -> tuple[bytes, list[str]]:
    """The message to submit and its envelope recipients (To, Cc and Bcc).

    ``unsent``: a draft for the Drafts folder, which may have no recipients yet and keeps its Bcc line;
    a message to send has none (RFC 5322 §3.6.3: Bcc recipients are in the envelope only).
    ``link``: with ``unsent``, what the draft answers or forwards (DRAFT_LINK_HEADER).
    """
    to, cc, bcc = recipients(draft.to), recipients(draft.cc), recipients(draft.bcc)
    rcpts = list(dict.fromkeys(to + cc + bcc))
    if not rcpts and not unsent:
        raise ComposeError("no_recipients")
    if len(rcpts) > MAX_RECIPIENTS:
        raise ComposeError("too_many_recipients", str(MAX_RECIPIENTS))
    # Headers as RFC 2047/2231 encoded words unless an address needs SMTPUTF8 (RFC 6532) anyway.
    policy = email.policy.SMTP if all(a.isascii() for a in rcpts + [account.address]) else email.policy.SMTPUTF8
    m = EmailMessage(policy=policy)
    local, _, domain = account.address.rpartition("@")
    m["From"] = HeaderAddress(account.display_name or "", local, domain)
    if to or not unsent:
        m["To"] = ", ".join(to) if to else "undisclosed-recipients:;"
    if cc:
        m["Cc"] = ", ".join(cc)
    if bcc and unsent:
        m["Bcc"] = ", ".join(bcc)
    m["Subject"] = " ".join(draft.subject[:MAX_SUBJECT_CHARS].split())
    m["Date"] = format_datetime(now)
    m["Message-ID"] = f"<{secrets.token_hex(12)}@{hostname}>"
    if draft.in_reply_to:
        m["In-Reply-To"] = draft.in_reply_to
        m["References"] = " ".join((draft.references + " " + draft.in_reply_to).split()[-20:])
    elif draft.references:  # a forward keeps the thread (RFC 5322 §3.6.4) without replying to anyone
        m["References"] = " ".join(draft.references.split()[-20:])
    if unsent and link is not None and link.mode != "new":
        m[DRAFT_LINK_HEADER] = link.header()
    m["MIME-Version"] = "1.0"
    markup = richtext.clean(draft.body_html) if draft.body_html else ""
    if markup:  # RFC 2046 §5.1.4: text/plain first, the richer text/html last
        m.set_content(richtext.as_text(markup), subtype="plain", charset="utf-8")
        m.add_alternative(richtext.document(markup), subtype="html", charset="utf-8")
    else:
        m.set_content(draft.body[:MAX_BODY_CHARS].replace("\r\n", "\n"), subtype="plain", charset="utf-8")
    for up in uploads:
        if up.content_type == "message/rfc822":  # a forwarded original kept in a draft goes on as one
            m.add_attachment(email.message_from_bytes(up.data, policy=email.policy.default), filename=up.filename)
            continue
        ctype = up.content_type if "/" in up.content_type else (
            mimetypes.guess_type(up.filename)[0] or "application/octet-stream")
        maintype, _, subtype = ctype.partition("/")
        params = {}
        if maintype == "text":  # an uploaded text file says no charset: name it when it is UTF-8
            try:
                up.data.decode("utf-8")
                params["charset"] = "utf-8"
            except UnicodeDecodeError:
                pass
        m.add_attachment(up.data, maintype=maintype, subtype=subtype, filename=up.filename, params=params)
    if forwarded is not None:  # the original goes along whole (its attachments too), as message/rfc822
        m.add_attachment(email.message_from_bytes(forwarded, policy=email.policy.default), filename=forwarded_name)
    data = m.as_bytes(policy=policy.clone(linesep="\r\n"))
    return data, rcpts


def _addr_list(addrs) -> list[str]:
    return [a.addr_spec for a in addrs if a.addr_spec and "MISSING_" not in a.addr_spec]


def _prefixed(prefix: str, subject: str) -> str:
    s = subject.strip()
    return s if s.lower().startswith(prefix.lower()) else f"{prefix} {s}"


def _quoted(env: Envelope, text: str, intro: str) -> str:
    lines = text[:QUOTE_CHARS].splitlines()
    return f"\n\n{intro}\n" + "\n".join("> " + line for line in lines) + "\n"


def reply_draft(account: Account, parsed: ParsedMessage, text: str, *, mode: str, intro: str) -> Draft:
    """RFC 5322 §3.6.4: reply to Reply-To (else From); reply-all adds the other To and Cc, never ourselves."""
    env = parsed.envelope
    first = _addr_list(env.reply_to) or _addr_list(env.from_)
    to = list(first)
    cc: list[str] = []
    if mode == "replyall":
        me = account.address.lower()
        to = [a for a in dict.fromkeys(first + _addr_list(env.to)) if a.lower() != me] or first
        cc = [a for a in dict.fromkeys(_addr_list(env.cc)) if a.lower() != me and a not in to]
    refs = next((v for k, v in parsed.headers_decoded if k.lower() == "references"), "")
    return Draft(to=", ".join(to), cc=", ".join(cc), subject=_prefixed("Re:", env.subject_decoded),
                 body=_quoted(env, text, intro), in_reply_to=env.message_id or "", references=refs)


def forward_draft(parsed: ParsedMessage, text: str, *, intro: str) -> Draft:
    refs = next((v for k, v in parsed.headers_decoded if k.lower() == "references"), "")
    refs = " ".join((refs + " " + (parsed.envelope.message_id or "")).split())
    return Draft(subject=_prefixed("Fwd:", parsed.envelope.subject_decoded), body=_quoted(parsed.envelope, text, intro),
                 references=refs)


def continue_draft(raw: bytes) -> tuple[Draft, list[Upload], DraftLink]:
    """A message saved in Drafts back as the form's values, its attachments (to go along when it is sent)
    and what it answers or forwards."""
    m = email.message_from_bytes(raw, policy=email.policy.default)

    def header(name: str, limit: int) -> str:
        try:
            return " ".join(str(m.get(name, "")).split())[:limit]
        except (ValueError, TypeError, IndexError):  # a header the parser cannot read is left empty
            return ""
    part = m.get_body(("plain",))
    try:
        body = part.get_content() if part is not None else ""
    except (LookupError, ValueError):
        body = ""
    html_part = m.get_body(("html",))
    try:
        markup = richtext.body_of(html_part.get_content()) if html_part is not None else ""
    except (LookupError, ValueError):
        markup = ""
    uploads = []
    for att in m.iter_attachments():
        if att.get_content_type() == "message/rfc822" and att.is_multipart():  # RFC 2046 §5.2.1: a forward
            inner = att.get_payload(0)
            uploads.append(Upload(att.get_filename() or "message.eml", "message/rfc822",
                                  inner.as_bytes(policy=inner.policy.clone(linesep="\r\n"))))
            continue
        data = att.get_payload(decode=True)
        if isinstance(data, bytes):
            uploads.append(Upload(att.get_filename() or "attachment", att.get_content_type(), data))
    draft = Draft(header("To", 8192), header("Cc", 8192), header("Subject", MAX_SUBJECT_CHARS),
                  body[:MAX_BODY_CHARS], header("In-Reply-To", 998), header("References", 8192), markup,
                  header("Bcc", 8192))
    return draft, uploads, DraftLink.parse(header(DRAFT_LINK_HEADER, MAX_LINK_CHARS))
