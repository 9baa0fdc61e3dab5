"""Turns a stored event into a notification message: Jinja2 templates (text and HTML, zh and en) and the headers of a robot.

Headers (what makes clients and responders treat it as a notification)
- `Auto-Submitted: auto-generated` (RFC 3834 §5): no out-of-office answers it (ours checks it,
  delivery/autoreply.py), and the envelope sender is the null reverse-path (RFC 5321 §4.5.5), so
  no bounce or reply goes back to the source.
- `List-Id` per source (RFC 2919), `List-Unsubscribe` pointing at the preference page (RFC 2369 §3.2).
- `Message-ID` names the event and its sending (queue id), so a resend is a new message; every
  event of one workflow item carries `In-Reply-To` and `References` to one id derived from
  (source, item), so clients thread an item's updates together (RFC 5322 §3.6.4), as GitHub's
  notifications do.

Templates are looked up as `{type}.{locale}.txt|html` in the override directory
(`<data_dir>/templates/events`), then among the shipped ones, then `default.{locale}.*`; the
override directory is re-read when a file changes (no restart).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from email.header import Header
from email.utils import formataddr
from pathlib import Path

import jinja2

from mailboxes.events import Event

log = logging.getLogger("postroom.events")

SHIPPED = Path(__file__).parent / "templates"
MAX_LINE = 78  # header and 7bit body lines longer than this are folded or encoded (RFC 5322 §2.1.1)
MAX_TO_LISTED = 20  # more recipients than this: "undisclosed-recipients:;" in To (their addresses stay private)
SENDER_LOCALPART = "notifications"
PREFERENCES_PATH = "/settings/notifications"
URGENT_PREFIX = {"zh": "【紧急】", "en": "[Urgent] "}
DIGEST_TITLE = {"zh": "通知汇总：{n} 条", "en": "Digest: {n} notifications"}


class Templates:
    """The Jinja2 environment: the override directory first, then the shipped templates.

    The template chosen for (type, locale, part) is remembered and looked at again after
    RECHECK seconds: then an override file added, changed or removed since is taken up (no
    restart), and in between a render costs no file-system look-ups (select_template with
    auto_reload stat'ed the files of every render: 4.5 % of a notification's CPU).
    """

    RECHECK = 2.0  # seconds a chosen template is used before the files are looked at again

    def __init__(self, override_dir: Path | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.FileSystemLoader(str(SHIPPED)))
        # auto_reload off: an `{% extends %}` stat'ed its base template at every render (3 % of a
        # notification's CPU); _look_at_overrides clears the cache when an override changes.
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), auto_reload=False,
                                      autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                                          default_for_string=False),
                                      trim_blocks=True, keep_trailing_newline=True)
        self._override = override_dir
        self._clock = clock
        self._chosen: dict[tuple[str, str, str], tuple[jinja2.Template, float]] = {}
        self._overrides: tuple = ()  # (name, mtime, size) of the override files seen at the last look

    def render(self, type_: str, locale: str, ext: str, context: dict) -> str:
        key = (type_, locale, ext)
        now = self._clock()
        hit = self._chosen.get(key)
        if hit is None or now - hit[1] >= self.RECHECK:
            self._look_at_overrides()
            tpl = self.env.select_template([f"{type_}.{locale}.{ext}", f"default.{locale}.{ext}"])
            self._chosen[key] = hit = (tpl, now)
        return hit[0].render(**context)

    def warm(self) -> int:
        """Compile every template now (in a thread, at start): the first notifications after a start
        compiled theirs on the event loop, 2-5 ms each, while the posts of a burst waited. A broken
        override is reported here, at start, and again when it is used. Returns how many compiled."""
        self._look_at_overrides()
        done = 0
        for name in self.env.list_templates():
            try:
                self.env.get_template(name)
                done += 1
            except jinja2.TemplateError as exc:
                log.warning("event template %s does not compile: %s", name, exc)
        return done

    def _look_at_overrides(self) -> None:
        """Forget every compiled template when the override directory's files changed (added ones included)."""
        if self._override is None:
            return
        try:
            # size too: two writes within one clock tick of the file system can share an mtime
            seen = tuple(sorted((e.name, (st := e.stat()).st_mtime_ns, st.st_size)
                                for e in os.scandir(self._override) if e.is_file()))
        except OSError:  # no override directory (yet)
            seen = ()
        if seen != self._overrides:
            self._overrides = seen
            self.env.cache.clear()  # type: ignore[union-attr]
            self._chosen.clear()


def thread_id(source_id: int, item: str, hostname: str) -> str:
    """The Message-ID every event of one workflow item refers to."""
    h = hashlib.sha256(f"{source_id}\x00{item}".encode()).hexdigest()[:24]
    return f"<item-{h}.s{source_id}@{hostname}>"


def message_id(event_id: int, queue_id: str, hostname: str) -> str:
    return f"<event-{event_id}-{queue_id.lower()}@{hostname}>"


def list_id(source: str, hostname: str) -> str:
    return f"{source} <{source}.events.{hostname}>"


def preferences_url(hostname: str) -> str:
    return f"https://{hostname}{PREFERENCES_PATH}"


def _unstructured(name: str, value: str) -> str:
    """An unstructured field's value (RFC 5322 §2.2.1): as is when short printable ASCII, else folded
    encoded-words (RFC 2047 §2) or folded ASCII. Line breaks from the value never reach the header."""
    value = " ".join(value.splitlines())
    if value.isascii() and value.isprintable() and len(name) + len(value) < MAX_LINE - 2:
        return value
    return Header(value, "us-ascii" if value.isascii() else "utf-8", header_name=name).encode(linesep="\r\n")


def _address_list(addresses: Sequence[str]) -> str:
    """Addresses folded after commas (RFC 5322 §3.4, FWS §3.2.2); UTF-8 addresses as they are (RFC 6532 §3.2)."""
    out, width = [], len("To: ")
    for a in addresses:
        if out and width + len(a) + 2 > MAX_LINE:
            out.append(",\r\n ")
            width = 1
        elif out:
            out.append(", ")
            width += 2
        out.append(a)
        width += len(a)
    return "".join(out)


def _headers(*, source: str, hostname: str, to: Sequence[str], subject: str, msgid: str,
             refs: str | None) -> list[tuple[str, str]]:
    fields = [("From", formataddr((source, f"{SENDER_LOCALPART}@{hostname}"))),
              ("To", _address_list(to) if 0 < len(to) <= MAX_TO_LISTED else "undisclosed-recipients:;"),
              ("Subject", _unstructured("Subject", subject)), ("Message-ID", msgid)]
    if refs:
        fields += [("In-Reply-To", refs), ("References", refs)]
    return fields + [("Auto-Submitted", "auto-generated"),  # RFC 3834 §5
                     ("List-Id", list_id(source, hostname)),  # RFC 2919
                     ("List-Unsubscribe", f"<{preferences_url(hostname)}>")]  # RFC 2369 §3.2


def _part(subtype: str, text: str) -> bytes:
    """A text/* part in UTF-8: 7bit when it is short-lined ASCII, else base64 (RFC 2045 §6.8)."""
    lines = text.encode("utf-8").splitlines()  # at CR, LF and CRLF only, as the email package does
    body = b"\r\n".join(lines) + b"\r\n"
    if body.isascii() and all(len(line) <= MAX_LINE for line in lines):
        cte, data = "7bit", body
    else:
        cte, data = "base64", base64.encodebytes(body).replace(b"\n", b"\r\n")
    return (f"Content-Type: text/{subtype}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            .encode("ascii") + data)


def _message(fields: list[tuple[str, str]], text: str, html: str) -> bytes:
    """multipart/alternative, the text part first (RFC 2046 §5.1.4), written directly: the email
    package's header registry and generator cost ~2 ms a message, most of the events worker's time."""
    parts = [_part("plain", text), _part("html", html)]
    boundary = "=_" + secrets.token_hex(16)  # "=_" occurs in no base64 or 7bit body we write unless chosen
    while any(boundary.encode("ascii") in p for p in parts):
        boundary = "=_" + secrets.token_hex(16)
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    head += f"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary=\"{boundary}\"\r\n\r\n"
    sep = f"--{boundary}\r\n".encode("ascii")
    return (head.encode("utf-8") + b"".join(sep + p + b"\r\n" for p in parts)
            + f"--{boundary}--\r\n".encode("ascii"))


def _context(ev: Event, source: str, hostname: str) -> dict:
    p = ev.payload
    return {"title": p["title"], "body": p.get("body", ""), "data": p.get("data") or {}, "link": p.get("link", ""),
            "type": ev.type, "urgency": ev.urgency, "item": ev.item, "id": ev.ext_id, "source": source,
            "preferences_url": preferences_url(hostname)}


def build(ev: Event, source: str, *, hostname: str, to: Sequence[str], templates: Templates) -> bytes:
    """The notification for one event (multipart/alternative: text, then HTML)."""
    ctx = _context(ev, source, hostname)
    subject = (URGENT_PREFIX[ev.locale] if ev.urgency == "urgent" else "") + ctx["title"]
    fields = _headers(source=source, hostname=hostname, to=to, subject=subject,
                      msgid=message_id(ev.id, ev.queue_id, hostname), refs=thread_id(ev.source_id, ev.item, hostname))
    return _message(fields, templates.render(ev.type, ev.locale, "txt", ctx),
                    templates.render(ev.type, ev.locale, "html", ctx))


def digest_id(first_item: int, account_id: int, hostname: str) -> str:
    return f"<digest-{first_item}-{account_id}@{hostname}>"


def build_digest(events: Sequence[Event], sources: dict[int, str], *, hostname: str, to: str, locale: str,
                 first_item: int, account_id: int, templates: Templates) -> bytes:
    """One message with every held event, grouped by type (a text and an HTML part)."""
    groups: dict[str, list[dict]] = {}
    for ev in events:
        groups.setdefault(ev.type, []).append(_context(ev, sources.get(ev.source_id, "?"), hostname))
    ctx = {"groups": groups, "count": len(events), "preferences_url": preferences_url(hostname)}
    names = sorted({sources.get(ev.source_id, "?") for ev in events})
    source = names[0] if len(names) == 1 else "postroom"
    fields = _headers(source=source, hostname=hostname, to=[to], subject=DIGEST_TITLE[locale].format(n=len(events)),
                      msgid=digest_id(first_item, account_id, hostname), refs=None)
    return _message(fields, templates.render("digest", locale, "txt", ctx), templates.render("digest", locale, "html", ctx))
