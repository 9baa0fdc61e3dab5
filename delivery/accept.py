"""Mail from other servers: drop forged Authentication-Results, verify DKIM, stamp trace headers, then deliver.

Implementation notes
- RFC 8601 §5: an Authentication-Results field that claims our authserv-id
  (our host name) and arrives from outside is forged; it is removed before
  ours is added. Fields with other authserv-ids are left alone.
- DKIM is checked against locally trusted keys first (closed networks), then
  DNS if a look-up is configured. dkimpy is CPU work and, with DNS, blocking
  I/O, so it runs in a worker thread; an unsigned message skips it.
- The headers we add are prepended (Received on top, RFC 5321 §4.4), so the
  bytes the client sent stay a suffix of what is stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from . import dkim
from .keys import DkimKeys
from .queue import new_queue_id
from .received import received_header
from .submit import Client, Outcome, Submitter, header_block

log = logging.getLogger("postroom.accept")

_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")
_AR_NAME = re.compile(rb"(?i)\Aauthentication-results[ \t]*:[ \t\r\n]*([^; \t\r\n]+)")


@dataclass(frozen=True)
class Inbound:
    """A message another server handed us over SMTP (port 25 role, not authenticated)."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    client: Client
    queue_id: str | None = None


def strip_forged_results(data: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields that carry our authserv-id (RFC 8601 §5)."""
    head = header_block(data)
    if b"authentication-results" not in head.lower():
        return data
    ours = authserv_id.lower().encode("ascii", errors="replace")
    fields = _FIELD_START.split(head)
    kept = []
    for f in fields:
        m = _AR_NAME.match(f)
        if m is not None and m.group(1).lower().rstrip(b".") == ours:
            continue
        kept.append(f)
    return b"".join(kept) + data[len(head):]


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
        return await asyncio.to_thread(dkim.verify_all, data, trusted, self.dns_lookup)

    async def accept(self, msg: Inbound) -> Outcome:
        """Verify, stamp and deliver; durable when it returns with a 250."""
        qid = msg.queue_id or new_queue_id()
        data = strip_forged_results(msg.data, self.hostname)
        results = await self.verify(data)
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
