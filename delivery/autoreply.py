"""What per-account settings do to a local copy: rules place and flag it, an out-of-office answers it (RFC 3834).

Pure functions on the message's header block (read with mailboxes.headers, the
one header parser) and the account's settings; the hook in delivery/submit.py
calls them and does the I/O.

Implementation notes
- Rules run in order; "folder" sets the target (the last one wins), "flag" and
  "seen" add flags, "stop" ends the list. A folder a rule names that no longer
  exists is the caller's to catch: the copy goes to INBOX and that is logged.
- RFC 3834 §2: a responder replies only to mail addressed to the recipient
  directly (its address or an alias of it in To or Cc, not a list or a group it
  is in), never to a null reverse-path, never to mail that says it was
  automatically sent (Auto-Submitted other than "no", RFC 3834 §5) or that
  came through a list (any List-* field, RFC 2369 / RFC 2919; Precedence bulk,
  list or junk), never to addresses that are robots by convention
  (MAILER-DAEMON, owner-*, *-request, LISTSERV, majordomo), never to itself.
- The reply (RFC 3834 §3): to the reverse-path, from the null reverse-path
  (so nothing answers it, §3.3), `Auto-Submitted: auto-replied`, In-Reply-To
  and References to the original (§3.1.5), the subject the user set or
  "Auto: " and the original's (§3.1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from mailboxes.charsets import decode_header_value
from mailboxes.headers import field_value, parse_addresses, scan_header
from mailboxes.mailsettings import DeliverySettings, Rule
from mailboxes.model import Flag

MAX_REFERENCES = 20  # message ids carried on into References (RFC 5322 §3.6.4 lets the list grow; we cut it)
ROBOT_LOCALPARTS = frozenset({"mailer-daemon", "postmaster", "listserv", "majordomo", "nobody", "noreply",
                              "no-reply"})
_HEAD_FIELDS = frozenset({"from", "to", "cc", "subject", "message-id", "references", "auto-submitted",
                          "precedence"})


@dataclass(frozen=True)
class Head:
    """The few header fields rules and the responder read, decoded; addresses lower case."""

    from_text: str = ""  # display names and addresses of From, for "contains"
    to_text: str = ""  # the same of To and Cc
    to_cc: frozenset[str] = frozenset()
    subject: str = ""
    message_id: str = ""
    references: str = ""
    list_id: str = ""  # the identifier inside <> (RFC 2919 §3), lower case
    auto_submitted: str = ""  # its keyword, lower case (RFC 3834 §5)
    precedence: str = ""
    list_fields: bool = False  # any List-* field (RFC 2369, RFC 2919)


def read_head(raw: bytes) -> Head:
    """Read the top-level header once (callers give messages that passed header_problem's limits)."""
    fields, _ = scan_header(raw, 0, len(raw))
    values: dict[str, list[str]] = {}
    list_fields = False
    for f in fields:
        name = f[0]
        if name.startswith("list-"):
            list_fields = True
        if name in _HEAD_FIELDS or name == "list-id":
            values.setdefault(name, []).append(field_value(raw, f))

    def first(name: str) -> str:
        return values.get(name, [""])[0]

    def people(*names: str) -> tuple[str, frozenset[str]]:
        text, specs = [], set()
        for n in names:
            for v in values.get(n, ()):
                for a in parse_addresses(v):
                    if a.name:
                        text.append(a.name_decoded or decode_header_value(a.name))
                    if a.addr_spec:
                        text.append(a.addr_spec)
                        specs.add(a.addr_spec.lower())
        return " ".join(text), frozenset(specs)

    from_text, _ = people("from")
    to_text, to_cc = people("to", "cc")
    list_id = first("list-id")
    if "<" in list_id and ">" in list_id.rpartition("<")[2]:
        list_id = list_id.rpartition("<")[2].partition(">")[0]
    auto = first("auto-submitted").split(";", 1)[0].strip().lower()
    return Head(from_text, to_text, to_cc, decode_header_value(first("subject")), first("message-id").strip(),
                " ".join(first("references").split()), list_id.strip().lower(), auto,
                first("precedence").strip().lower(), list_fields)


# --- rules -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    folder: str = "INBOX"
    flags: int = 0
    keywords: tuple[str, ...] = ()


def matches(rule: Rule, head: Head) -> bool:
    want = rule.value.lower()
    if rule.field == "list-id":
        return bool(head.list_id) and head.list_id == want.strip("<>")
    text = {"from": head.from_text, "to": head.to_text, "subject": head.subject}.get(rule.field, "")
    return want in text.lower()


def place(rules: tuple[Rule, ...], head: Head) -> Placement:
    """Where and how the account's copy is written, after its rules in order."""
    folder, flags, keywords = "INBOX", 0, []
    for rule in rules:
        if not matches(rule, head):
            continue
        if rule.action == "folder":
            folder = rule.argument
        elif rule.action == "flag":
            if rule.argument.lower() == "\\flagged":
                flags |= Flag.FLAGGED
            elif rule.argument not in keywords:
                keywords.append(rule.argument)
        elif rule.action == "seen":
            flags |= Flag.SEEN
        elif rule.action == "stop":
            break
    return Placement(folder, int(flags), tuple(keywords))


# --- the out-of-office responder -----------------------------------------------------------------

def no_reply_reason(mail_from: str, head: Head, settings: DeliverySettings) -> str | None:
    """Why this message gets no auto-reply (RFC 3834 §2, see the notes); None: it may get one."""
    if not mail_from or mail_from == "<>":
        return "null sender"
    if head.auto_submitted and head.auto_submitted != "no":
        return "auto-submitted"
    if head.list_fields:
        return "list mail"
    if head.precedence in ("bulk", "list", "junk"):
        return "precedence " + head.precedence
    local = mail_from.rpartition("@")[0].lower()
    if local in ROBOT_LOCALPARTS or local.startswith("owner-") or local.endswith(("-request", "-owner")):
        return "robot sender"
    if mail_from.lower() in settings.addresses:
        return "own address"
    if not head.to_cc & settings.addresses:
        return "not addressed directly"
    return None


def build_reply(*, account_address: str, display_name: str, to: str, subject: str, body: str, head: Head,
                hostname: str, now: datetime) -> bytes:
    """The auto-reply message (RFC 3834 §3)."""
    msg = EmailMessage()
    msg["From"] = formataddr((display_name, account_address)) if display_name else account_address
    msg["To"] = to
    msg["Subject"] = subject.strip() or ("Auto: " + head.subject if head.subject else "Auto: out of office")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("autoreply", domain=hostname)
    if head.message_id:
        msg["In-Reply-To"] = head.message_id
        refs = (head.references.split() + [head.message_id])[-MAX_REFERENCES:]
        msg["References"] = " ".join(refs)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    msg.set_content(body.replace("\r\n", "\n"), charset="utf-8")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
