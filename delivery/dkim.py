"""DKIM (RFC 6376) over dkimpy: key generation, signing, verification against trusted keys, Authentication-Results.

Implementation notes
- Verification never touches DNS by itself: keys come from `trusted_keys`
  (our own domains and the district servers we exchange documents with),
  then from the `dns_lookup` callable if one is passed in. dkimpy is handed a
  `dnsfunc` that serves exactly those two sources.
- Result mapping (RFC 8601 §2.7.1, RFC 6376 §6.1): no signature → none; the
  signature or body hash does not verify → fail; no key, malformed key,
  malformed signature → permerror; key lookup failed for now → temperror.
- At most `MAX_SIGNATURES` signatures are examined per message.
- Text that comes from the message (d=, s=, error reasons) is sanitised
  before it is written into an Authentication-Results header.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "DkimResult",
    "KeyLookupError",
    "authentication_results_header",
    "dns_record_name",
    "generate_key",
    "sign",
    "verify",
    "verify_all",
    "zone_file_record",
]

MAX_SIGNATURES = 5
MIN_KEY_BITS = 1024  # RFC 8301 §3.2: verifiers reject smaller RSA keys
MAX_KEY_BITS = 4096

# RFC 6376 §5.4.1 recommends these; From, Subject, To, Date and Message-ID are
# listed twice so that adding a second instance breaks the signature
# ("oversigning", RFC 6376 §8.15).
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "from", "from",
    "sender", "reply-to",
    "subject", "subject",
    "date", "date",
    "message-id", "message-id",
    "to", "to", "cc",
    "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding",
    "x-postroom-classification", "x-postroom-classification",  # the label (delivery/labels.py)
)  # fmt: skip

ResultName = Literal["pass", "fail", "none", "temperror", "permerror"]

_LABEL_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_TOKEN_RE = re.compile(r"\A[A-Za-z0-9!#$%&'*+.^_`{|}~-]+\Z")  # RFC 2045 §5.1 token (as RFC 8601 uses it)

# dkimpy logs every failure at error level; the caller logs the result instead.
_QUIET = logging.getLogger("postroom.dkim.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


# dkimpy's failure modes on hostile messages and signatures (it is not strict
# about raising only DKIMException); every one of them means "cannot be checked".
_DKIMPY_FAILURES = (dkimpy.DKIMException, binascii.Error, ValueError, KeyError, IndexError, TypeError)


class KeyLookupError(Exception):
    """Raised by a `dns_lookup` callable when the key could not be fetched for now (→ temperror)."""


@dataclass(frozen=True, slots=True)
class DkimResult:
    """Outcome of checking one DKIM signature (or none)."""

    result: ResultName
    domain: str | None = None
    selector: str | None = None
    reason: str = ""


def _check_name(value: str, what: str) -> str:
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253 or not all(_LABEL_RE.match(label) for label in name.split(".")):
        raise ValueError(f"bad DKIM {what}: {value!r} (use the ASCII/A-label form)")
    return name


def dns_record_name(domain: str, selector: str) -> str:
    """Where the public key is published (RFC 6376 §3.6.2.1)."""
    return f"{_check_name(selector, 'selector')}._domainkey.{_check_name(domain, 'domain')}"


def generate_key(domain: str, selector: str, bits: int = 2048) -> tuple[bytes, str]:
    """Make an RSA key pair; return (PKCS#1 PEM private key, TXT record value for `dns_record_name`)."""
    dns_record_name(domain, selector)  # validates both names
    if not MIN_KEY_BITS <= bits <= MAX_KEY_BITS:
        raise ValueError(f"key size must be {MIN_KEY_BITS}..{MAX_KEY_BITS} bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, which dkimpy parses
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    # RFC 6376 §3.6.1: v=DKIM1; k=rsa; p=base64(SubjectPublicKeyInfo DER)
    txt = f"v=DKIM1; k=rsa; p={base64.b64encode(public_der).decode('ascii')}"
    return private_pem, txt


def zone_file_record(domain: str, selector: str, txt: str) -> str:
    """A zone-file line for the key, split into 255-octet character-strings (RFC 1035 §3.3.14)."""
    chunks = [txt[i : i + 255] for i in range(0, len(txt), 255)] or [""]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{dns_record_name(domain, selector)}. IN TXT ( {quoted} )"


def sign(
    message: bytes,
    domain: str,
    selector: str,
    private_pem: bytes,
    headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
) -> bytes:
    """Return the `DKIM-Signature:` header line (CRLF-terminated) to prepend to `message`.

    Canonicalization is relaxed/relaxed (RFC 6376 §3.4), which survives the
    header refolding and whitespace changes of intermediate MTAs.
    """
    d = _check_name(domain, "domain").encode("ascii")
    s = _check_name(selector, "selector").encode("ascii")
    try:
        return dkimpy.sign(
            message,
            s,
            d,
            private_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.lower().encode("ascii") for h in headers],
            logger=_QUIET,
        )
    except dkimpy.DKIMException as e:
        raise ValueError(f"cannot sign: {e}") from e


# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------


def _reason(text: object) -> str:
    flat = " ".join(str(text).split())
    return "".join(c for c in flat if 32 <= ord(c) < 127 and c not in '"\\')[:120]


def _ascii(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if value is None:
        return None
    return str(value).strip().rstrip(".").lower()


class _KeySource:
    """The `dnsfunc` given to dkimpy: trusted keys first, then the injected lookup; remembers what went wrong."""

    def __init__(
        self,
        trusted_keys: Mapping[tuple[str, str], str],
        dns_lookup: Callable[[str], str | bytes | None] | None,
    ) -> None:
        self._trusted = {(d.strip().rstrip(".").lower(), s.strip().lower()): v for (d, s), v in trusted_keys.items()}
        self._lookup = dns_lookup
        self.missing = False
        self.temporary = ""
        self.record: bytes | None = None

    def reset(self) -> None:
        self.missing = False
        self.temporary = ""
        self.record = None

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        del timeout
        qname = _ascii(name) or ""
        selector, sep, domain = qname.partition("._domainkey.")
        record: str | bytes | None = self._trusted.get((domain, selector)) if sep else None
        if record is None and self._lookup is not None:
            try:
                record = self._lookup(qname)
            except KeyLookupError as e:
                self.temporary = _reason(e) or "key lookup failed"
                return None
        if not record:
            self.missing = True
            return None
        self.record = record.encode("ascii", errors="replace") if isinstance(record, str) else record
        return self.record


def _verify_one(d: dkimpy.DKIM, idx: int, source: _KeySource) -> DkimResult:
    source.reset()
    try:
        ok = d.verify(idx=idx, dnsfunc=source)
    except dkimpy.ValidationError as e:
        domain, selector = _ascii(getattr(d, "domain", None)), _ascii(getattr(d, "selector", None))
        if str(e).startswith("body hash mismatch"):
            return DkimResult("fail", domain, selector, "body hash did not verify")  # RFC 6376 §6.1.3
        return DkimResult("permerror", domain, selector, _reason(e))
    except _DKIMPY_FAILURES as e:
        domain, selector = _ascii(getattr(d, "domain", None)), _ascii(getattr(d, "selector", None))
        return DkimResult("permerror", domain, selector, _reason(e))
    domain, selector = _ascii(getattr(d, "domain", None)), _ascii(getattr(d, "selector", None))
    if ok:
        return DkimResult("pass", domain, selector)
    if source.temporary:
        return DkimResult("temperror", domain, selector, source.temporary)
    if source.missing:
        return DkimResult("permerror", domain, selector, "no key for signature")  # RFC 6376 §6.1.2
    # dkimpy also answers False for an unusable key record; tell the two apart.
    try:
        dkimpy.evaluate_pk(b"", source.record)
    except (dkimpy.DKIMException, binascii.Error, ValueError) as e:
        return DkimResult("permerror", domain, selector, _reason(e))
    return DkimResult("fail", domain, selector, "signature did not verify")


def verify_all(
    message: bytes,
    trusted_keys: Mapping[tuple[str, str], str],
    dns_lookup: Callable[[str], str | bytes | None] | None = None,
) -> tuple[DkimResult, ...]:
    """Check each DKIM-Signature (up to MAX_SIGNATURES), topmost first; `(none,)` when unsigned."""
    source = _KeySource(trusted_keys, dns_lookup)
    try:
        d = dkimpy.DKIM(message, logger=_QUIET, minkey=MIN_KEY_BITS)
    except _DKIMPY_FAILURES as e:
        return (DkimResult("permerror", reason=_reason(e)),)
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return (DkimResult("none", reason="message not signed"),)
    return tuple(_verify_one(d, i, source) for i in range(min(count, MAX_SIGNATURES)))


def verify(
    message: bytes,
    trusted_keys: Mapping[tuple[str, str], str],
    dns_lookup: Callable[[str], str | bytes | None] | None = None,
) -> DkimResult:
    """One answer for the message: the first passing signature, else the topmost signature's result."""
    results = verify_all(message, trusted_keys, dns_lookup)
    return next((r for r in results if r.result == "pass"), results[0])


# ---------------------------------------------------------------------------
# Authentication-Results (RFC 8601)
# ---------------------------------------------------------------------------


def _value(text: str) -> str:
    """RFC 8601 §2.2 `value`: a token as is, anything else as a quoted-string."""
    if _TOKEN_RE.match(text):
        return text
    return '"' + "".join(c for c in text if 32 <= ord(c) < 127 and c not in '"\\') + '"'


def authentication_results_header(authserv_id: str, result: DkimResult | Sequence[DkimResult]) -> bytes:
    """`Authentication-Results:` line (CRLF-terminated) for the DKIM result(s) (RFC 8601 §2.2, §2.7.1)."""
    if not _TOKEN_RE.match(authserv_id):
        raise ValueError("authserv-id must be a token (our host name)")
    results = [result] if isinstance(result, DkimResult) else list(result)
    if not results:
        results = [DkimResult("none")]
    clauses = []
    for r in results:
        clause = f"dkim={r.result}"
        if r.reason and r.result != "pass":
            clause += f" reason={_value(_reason(r.reason))}"  # RFC 8601 §2.2 reasonspec
        if r.domain:
            clause += f" header.d={_value(r.domain)}"  # RFC 8601 §2.7.1 / RFC 6376 §3.5 d=
        if r.selector:
            clause += f" header.s={_value(r.selector)}"  # RFC 8601 §2.7.1 (IANA "header.s")
        clauses.append(clause)
    # RFC 8601 §2.2: authserv-id, then "; "-separated resinfo; fold one per line.
    return ("Authentication-Results: " + authserv_id + ";\r\n\t" + ";\r\n\t".join(clauses) + "\r\n").encode("ascii")
