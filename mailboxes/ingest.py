"""Parse once on entry: turn raw message bytes into a PreparedMessage (hash, stored parse, index fields)."""

from __future__ import annotations

from datetime import timezone

from . import mime
from .blobs import PreparedMessage, sha256


def _addr_text(env) -> str:
    parts: list[str] = []
    for field in ("from_", "sender", "reply_to", "to", "cc", "bcc"):
        for a in getattr(env, field, None) or ():
            name, mailbox, host = a.name_decoded or a.name, a.mailbox, a.host
            if name:
                parts.append(name)
            if mailbox and host:
                parts.append(f"{mailbox}@{host}")
    return " ".join(parts)


def _from_parsed(raw: bytes, parsed: mime.ParsedMessage, parsed_json: str, head: list[str]) -> PreparedMessage:
    env = parsed.envelope
    sent = env.date_parsed
    if sent is not None and sent.tzinfo is None:
        sent = sent.replace(tzinfo=timezone.utc)
    return PreparedMessage(raw=raw, sha256=sha256(raw), parsed_json=parsed_json, sent_at=sent,
                           subject=env.subject_decoded or "", addrs=_addr_text(env), body_text=parsed.text or "",
                           head_text="\n".join(head))


def prepare(raw: bytes) -> PreparedMessage:
    """Parse a message once; never raises on broken MIME (it is stored byte for byte)."""
    parsed, head = mime.parse_with_head(raw)
    # The text extract lives in the search index, not in the stored parse.
    return _from_parsed(raw, parsed, parsed.to_json(include_text=False), head)


def prepare_stored(raw: bytes, parsed_json: str) -> PreparedMessage:
    """A PreparedMessage for a blob copied to another partition (copy, archive moves).

    The text extract is not stored, so the message is parsed again to index it
    there; this is the rare path.
    """
    return prepare(raw)
