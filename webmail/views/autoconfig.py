"""Public client autoconfiguration endpoints: Thunderbird autoconfig and Outlook Autodiscover (POX), filled from the real listeners.

Neither says whether an address exists: any address in a local domain gets the same answer
(Autodiscover echoes the address as the log-in name; Thunderbird's answer names no address
at all), an address elsewhere gets "not here". No session is needed or used.
"""

from __future__ import annotations

from aiohttp import web

from mailboxes.addresses import normalise_address
from mailboxes.errors import InvalidInput

from .. import autoconfig
from ..security import AUTODISCOVER_PATHS

__all__ = ["AUTODISCOVER_PATHS", "autodiscover", "thunderbird"]
from ..context import WEBMAIL

MAX_ADDRESS_CHARS = 320
XML = "application/xml"



async def _local_address(request: web.Request, raw: str | None) -> str | None:
    """The normalised address when it is in one of our domains, else None."""
    if not raw or len(raw) > MAX_ADDRESS_CHARS:
        return None
    try:
        address = normalise_address(raw)
    except InvalidInput:
        return None
    domains = await request.app[WEBMAIL].mailboxes.directory.local_domains()
    return address if address.rsplit("@", 1)[1] in domains else None


async def thunderbird(request: web.Request) -> web.Response:
    """GET /.well-known/autoconfig/mail/config-v1.1.xml and /mail/config-v1.1.xml (?emailaddress=)."""
    wm = request.app[WEBMAIL]
    asked = request.query.get("emailaddress")
    if asked is not None and await _local_address(request, asked) is None:
        raise web.HTTPNotFound()
    domains = sorted(await wm.mailboxes.directory.local_domains())
    body = autoconfig.thunderbird(wm.selfservice.listeners, domains, display_name=wm.selfservice.listeners.hostname)
    return web.Response(body=body, content_type=XML, charset="utf-8")


async def autodiscover(request: web.Request) -> web.Response:
    """POST /autodiscover/autodiscover.xml ([MS-OXDSCLI] POX); no CSRF token (see webmail/security.py)."""
    wm = request.app[WEBMAIL]
    body = await request.content.read(autoconfig.MAX_AUTODISCOVER_BYTES + 1)
    address = await _local_address(request, autoconfig.autodiscover_request_address(body))
    if address is None:
        return web.Response(body=autoconfig.autodiscover_error("600", "Invalid Request"), content_type=XML,
                            charset="utf-8")
    return web.Response(body=autoconfig.autodiscover(wm.selfservice.listeners, address, display_name=address),
                        content_type=XML, charset="utf-8")
