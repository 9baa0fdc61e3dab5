"""IMAP wire form of a stored envelope and body structure (FETCH ENVELOPE, BODY, BODYSTRUCTURE).

Output follows RFC 3501 §7.4.2 and, for ordinary mail, matches Dovecot byte for byte (its own
test vector is in tests/unit/mime/test_render.py), so clients tuned against Dovecot see what
they expect:
- type, subtype, parameter names, disposition and encoding come out as stored: lowercased
  (IMAP compares them case-insensitively; Dovecot's own output is lowercase for the usual
  lowercase headers, while Cyrus uppercases).
- parameters are the header's own, not decoded: RFC 2231 continuations merged into one
  `"name*" "GBK''%D6%D0..."` value and RFC 2047 words left in place, exactly what Dovecot
  sends; Thunderbird and other clients decode them themselves. Raw 8-bit values (unencoded
  GBK file names) go out as literals holding the original bytes.
- a text part without a charset gets ("charset" "us-ascii") (RFC 2045 §5.2 default, as Dovecot).
- Subject and display names are written "for humans" as Dovecot does (whitespace runs
  collapsed, CR/LF dropped; quoted if nothing changed, else a literal). Other strings use the
  server's one string encoder, `responses.nstring` (quoted, or a literal for 8-bit, CR/LF,
  NUL or long values). NUL is not a CHAR8 (RFC 3501 §4.3), so it goes out as 0x80.
- `envelope_bytes` and `bodystructure_bytes` return the parenthesised value, ready to follow
  b"ENVELOPE " / b"BODYSTRUCTURE " / b"BODY ".
"""

from __future__ import annotations

from mailboxes.charsets import raw_bytes
from mailboxes.mime import Address, BodyPart, Envelope
from mailserver.imap.responses import literal, nstring

__all__ = ["imap_string", "imap_string_for_humans", "envelope_bytes", "bodystructure_bytes"]

_NIL = b"NIL"
_EMPTY_ENVELOPE = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
# RFC 3501 has no syntax for a multipart without parts; write one empty text part instead.
_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
_DEFAULT_CHARSET = b'"charset" "us-ascii"'


def _as_bytes(value: str | bytes) -> bytes:
    return raw_bytes(value) if isinstance(value, str) else bytes(value)


def imap_string(value: str | bytes | None) -> bytes:
    """RFC 3501 §4.3 nstring of a stored value: its original bytes, NUL made a legal CHAR8."""
    if value is None:
        return _NIL
    return nstring(_as_bytes(value).replace(b"\x00", b"\x80"))


def _nstring_nolf(value: str | None) -> bytes:
    if value is None:
        return _NIL
    return imap_string(_as_bytes(value).replace(b"\r", b"").replace(b"\n", b""))


def imap_string_for_humans(value: str | bytes | None) -> bytes:
    """A display string as Dovecot writes Subject and names: tidied, quoted if untouched, else a literal."""
    if value is None:
        return _NIL
    data = _as_bytes(value)
    # CR/LF dropped, tab as space, runs of spaces collapsed, both ends trimmed
    words = data.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b" ").split(b" ")
    cleaned = b" ".join(w for w in words if w)
    if cleaned == data and data.isascii() and not any(c in data for c in b'"\\\x00'):
        return b'"' + data + b'"'
    if not cleaned:
        return b'""'
    return literal(cleaned.replace(b"\x00", b"\x80"))


def _address(a: Address) -> bytes:
    return b"(%s %s %s %s)" % (imap_string_for_humans(a.name), imap_string(a.adl),
                               imap_string(a.mailbox), imap_string(a.host))


def _addresses(addrs: tuple[Address, ...]) -> bytes:
    # RFC 3501 §7.4.2: "(" 1*address ")" / nil, addresses not separated by spaces.
    if not addrs:
        return _NIL
    return b"(" + b"".join(_address(a) for a in addrs) + b")"


def envelope_bytes(env: Envelope | None) -> bytes:
    """RFC 3501 §7.4.2 ENVELOPE: date subject from sender reply-to to cc bcc in-reply-to message-id."""
    if env is None:
        return _EMPTY_ENVELOPE
    return b"(" + b" ".join((
        imap_string(env.date),
        imap_string_for_humans(env.subject),
        _addresses(env.from_),
        _addresses(env.sender or env.from_),     # RFC 3501 §7.4.2: default to from
        _addresses(env.reply_to or env.from_),
        _addresses(env.to),
        _addresses(env.cc),
        _addresses(env.bcc),
        imap_string(env.in_reply_to),
        imap_string(env.message_id),
    )) + b")"


def _params(params: tuple[tuple[str, str], ...], default_charset: bool) -> bytes:
    # RFC 3501 §9 body-fld-param: "(" string SP string *(SP string SP string) ")" / nil
    items = [imap_string(name) + b" " + imap_string(value) for name, value in params]
    if default_charset and not any(name in ("charset", "charset*") for name, _ in params):  # RFC 2231 charset*
        items.append(_DEFAULT_CHARSET)
    return b"(" + b" ".join(items) + b")" if items else _NIL


def _extension_common(part: BodyPart) -> list[bytes]:
    # RFC 3501 §9 body-ext-1part / body-ext-mpart tail: disposition, language, location
    if part.disposition is None:
        disposition = _NIL
    else:
        disposition = b"(%s %s)" % (imap_string(part.disposition),
                                    _params(part.disposition_params, False))
    language = b"(" + b" ".join(map(imap_string, part.language)) + b")" if part.language else _NIL
    return [disposition, language, _nstring_nolf(part.location)]


def _write(part: BodyPart, out: list[bytes], extended: bool) -> None:
    """One body without its surrounding parentheses, appended to out."""
    if part.is_multipart:
        # RFC 3501 §7.4.2: body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
        if part.parts:
            for child in part.parts:
                out.append(b"(")
                _write(child, out, extended)
                out.append(b")")
        else:
            out.append(_EMPTY_BODYSTRUCTURE if extended else _EMPTY_BODY)
        out.append(b" " + imap_string(part.subtype))
        if extended:
            out.append(b" " + b" ".join([_params(part.params, False), *_extension_common(part)]))
        return
    text = part.type == "text"
    rfc822 = part.type == "message" and part.subtype == "rfc822"
    # RFC 3501 §7.4.2 body-fields: params id description encoding size
    out.append(b" ".join((
        imap_string(part.type), imap_string(part.subtype), _params(part.params, text),
        _nstring_nolf(part.id), _nstring_nolf(part.description), imap_string(part.encoding),
        b"%d" % part.size,
    )))
    if text:
        out.append(b" %d" % (part.lines or 0))   # body-type-text: ... SP body-fld-lines
    elif rfc822:
        # body-type-msg: ... SP envelope SP body SP body-fld-lines
        if part.message is None:
            out.append(b" " + _EMPTY_ENVELOPE + b" " + (_EMPTY_BODYSTRUCTURE if extended else _EMPTY_BODY))
        else:
            out.append(b" " + envelope_bytes(part.message.envelope) + b" (")
            _write(part.message.body, out, extended)
            out.append(b")")
        out.append(b" %d" % (part.lines or 0))
    if extended:   # body-ext-1part: md5, then the common tail
        out.append(b" " + b" ".join([_nstring_nolf(part.md5), *_extension_common(part)]))


def bodystructure_bytes(body: BodyPart, extended: bool = True) -> bytes:
    """FETCH BODYSTRUCTURE (extended=True) or BODY (extended=False) of a stored body, parenthesised."""
    out = [b"("]
    _write(body, out, extended)
    out.append(b")")
    return b"".join(out)
