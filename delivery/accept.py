"""Mail from other servers: drop forged Authentication-Results, verify DKIM, stamp trace headers, then deliver.

Implementation notes
- RFC 8601 §5: an Authentication-Results field that claims our authserv-id
  (our host name) and arrives from outside is forged; it is removed before
  ours is added, in every spelling: any case, `Name :`, the id quoted, behind
  a comment or folded, or on a line that a bare CR/LF splits off another field.
  Fields with other authserv-ids are left alone.
- The header is read by mailboxes.headers (the reader ENVELOPE uses). Over its
  limits the message is refused (552/554). A From in one of our own domains
  is refused (550 5.7.1) unless a DKIM signature that verifies has a d= equal to
  that domain or a parent of it (DMARC-style relaxed alignment, RFC 7489 §3.1.1);
  so is a From that other readers could see differently (two fields, unparseable
  and naming one of our domains).
- A message that already has delivery.received.MAX_RECEIVED Received fields
  is refused 554 5.4.6 (RFC 5321 §6.3 loop detection); so is one submitted.
- DKIM is checked against locally trusted keys first (closed networks), then
  DNS if a look-up is configured. dkimpy is CPU work and, with DNS, blocking
  I/O, so it runs in a worker thread; an unsigned message skips it.
- The headers we add are prepended (Received on top, RFC 5321 §4.4), so the
  bytes the client sent stay a suffix of what is stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from mailboxes.charsets import quoted_string, skip_cfws
from mailboxes.headers import HeaderProblem, header_problem, lax_lines, originator, without_fields
from mailboxes.offload import offload

from . import dkim
from .envelope import LOCAL_FROM_UNVERIFIED, MAIL_LOOP, Reply
from .keys import DkimKeys
from .policy import header_reply
from .queue import new_queue_id
from .received import received_header, too_many_hops
from .submit import Client, Outcome, Submitter, header_block

log = logging.getLogger("postroom.accept")

_AR_NAME = b"authenticationresults"
_AUTHSERV_TOKEN = re.compile(r'[^\s;()"\\]+')


@dataclass(frozen=True)
class Inbound:
    """A message another server handed us over SMTP (port 25 role, not authenticated)."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    client: Client
    queue_id: str | None = None


def authserv_id(value: bytes) -> str:
    """The authserv-id an Authentication-Results value starts with (RFC 8601 §2.2), CFWS and quotes removed."""
    text = value.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
    i = skip_cfws(text, 0)
    if text[i:i + 1] == '"':
        found, _ = quoted_string(text, i)
    else:
        m = _AUTHSERV_TOKEN.match(text, i)
        found = m.group() if m else ""
    return found.strip().rstrip(".").lower()


def strip_forged_results(data: bytes, authserv_id_: str) -> bytes:
    """Remove Authentication-Results fields that carry our authserv-id, in any spelling (RFC 8601 §5)."""
    if b"authentication" not in header_block(data).lower():
        return data
    ours = authserv_id_.strip().rstrip(".").lower()

    def forged(_name: str, field: bytes) -> bool:
        return any(name == _AR_NAME and authserv_id(value) == ours for name, value in lax_lines(field))

    return without_fields(data, forged)


def own_domain_claim(data: bytes, local_domains: Collection[str],
                     results: tuple[dkim.DkimResult, ...]) -> Reply | None:
    """Mail from outside with a From in our own domains: None if an aligned DKIM signature verified."""
    who = originator(data)
    ours = {d.lower().rstrip(".") for d in local_domains}
    if who.problem is HeaderProblem.SEVERAL_FROM:
        return header_reply(who.problem)
    if who.problem is HeaderProblem.BAD_FROM:
        # Unparseable: refuse only if some reader could find one of our domains in it.
        text = b" ".join(value for name, value in lax_lines(header_block(data)) if name == b"from").lower()
        if any(d.encode("ascii", "ignore") in text for d in ours if d):
            return LOCAL_FROM_UNVERIFIED
        return None
    claimed = who.from_domains & ours
    if not claimed:
        return None
    passed = {r.domain for r in results if r.result == "pass" and r.domain}
    for domain in claimed:  # RFC 7489 §3.1.1 relaxed alignment, limited to d= at or above the From domain
        if not any(domain == d or domain.endswith("." + d) for d in passed):
            return LOCAL_FROM_UNVERIFIED
    return None


class Acceptor:
    def __init__(self, submitter: Submitter, keys: DkimKeys, *, hostname: str,
                 dns_lookup: Callable[[str], str | bytes | None] | None = None) -> None:
        self.submitter = submitter
        self.keys = keys
        self.hostname = hostname
        self.dns_lookup = dns_lookup

    async def verify(self, data: bytes) -> tuple[dkim.DkimResult, ...]:
        if b"dkim-signature" not in header_block(data).lower():
            return (dkim.DkimResult("none"),)
        trusted = await self.keys.trusted()
        return await offload(dkim.verify_all, data, trusted, self.dns_lookup)

    async def accept(self, msg: Inbound) -> Outcome:
        """Verify, stamp and deliver; durable when it returns with a 250."""
        qid = msg.queue_id or new_queue_id()
        problem = header_problem(msg.data)
        if problem is not None:
            return Outcome(qid, header_reply(problem))
        if too_many_hops(msg.data):  # RFC 5321 §6.3: refused at the door, the sending side bounces it
            log.info("accept queue_id=%s refused: %s", qid, MAIL_LOOP.text)
            return Outcome(qid, MAIL_LOOP)
        data = strip_forged_results(msg.data, self.hostname)
        results = await self.verify(data)
        refused = own_domain_claim(data, await self.submitter.local_domains(), results)
        if refused is not None:
            log.info("accept queue_id=%s refused: %s", qid, refused.text)
            return Outcome(qid, refused)
        for r in results:
            if r.result != "none":
                log.info("dkim queue_id=%s result=%s d=%s s=%s %s", qid, r.result, r.domain, r.selector, r.reason)
        c = msg.client
        stamp = received_header(helo=c.helo, client_ip=c.ip, client_rdns=c.rdns, by_host=self.hostname,
                                protocol=c.protocol, when=self.submitter.clock(), queue_id=qid,
                                recipient=msg.recipients[0] if len(msg.recipients) == 1 else None, tls_info=c.tls)
        stamp += dkim.authentication_results_header(self.hostname, results)  # RFC 8601 §2.2
        return await self.submitter.deliver(queue_id=qid, mail_from=msg.mail_from, recipients=msg.recipients,
                                            data=stamp + data, origin="smtp")
