"""Workflow sources, their tokens and their webhook endpoints changed and audited: the one path of `postroom source/webhook` and the admin console.

Every change is one audit entry (source.add, source.token, source.revoke, token.revoke,
webhook.set, webhook.remove) saying who and through which interface (`via`: cli or web), and
one line on `postroom.admin`. Neither ever holds a secret: a token is named by its number, a
webhook secret only as "new" or "kept".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .apitokens import ApiToken
from .events import Source, Sources
from .webhookendpoints import Endpoint, WebhookEndpoints

log = logging.getLogger("postroom.admin")


async def _audit(mb, actor: str, action: str, target: str, **detail) -> None:
    await mb.directory.audit(actor, action, target, **detail)
    log.info("admin action=%s target=%s actor=%s via=%s", action, target, actor, detail.get("via", ""))


def _sources(mb) -> Sources:
    return Sources(mb.router.central, clock=mb.directory.clock)


def _endpoints(mb) -> WebhookEndpoints:
    return WebhookEndpoints(mb.router.central, clock=mb.directory.clock)


async def add_source(mb, actor: str, name: str, *, via: str) -> tuple[Source, str, ApiToken]:
    """A new source and its first token: (source, secret shown once, token); InvalidInput or AlreadyExists."""
    src, secret, tok = await _sources(mb).add(name)
    await _audit(mb, actor, "source.add", src.name, token_id=tok.id, via=via)
    return src, secret, tok


async def new_token(mb, actor: str, name: str, *, via: str) -> tuple[Source, str, ApiToken]:
    """Another token for an active source (to rotate: give it to the system, then revoke the old one)."""
    src, secret, tok = await _sources(mb).new_token(name)
    await _audit(mb, actor, "source.token", src.name, token_id=tok.id, via=via)
    return src, secret, tok


async def revoke_source(mb, actor: str, name: str, *, via: str) -> Source:
    """The source and all its tokens refused from now on (its webhook endpoint, if any, stays)."""
    src = await _sources(mb).revoke(name)
    await _audit(mb, actor, "source.revoke", src.name, via=via)
    return src


async def revoke_token(mb, actor: str, name: str, token_id: int, *, via: str) -> ApiToken:
    """One token of the source refused from now on; NotFound when it is not that source's."""
    tok = await _sources(mb).revoke_token(name, token_id)
    await _audit(mb, actor, "token.revoke", str(tok.id), source=tok.label, via=via)
    return tok


async def set_webhook(mb, actor: str, source: str, url: str, *, secret: str | None = None,
                      new_secret: bool = False, allow_plain_http: bool = False, via: str) -> tuple[Endpoint, bool]:
    """WebhookEndpoints.set, audited: (the endpoint, whether its secret was generated now and must be shown once)."""
    ep, generated = await _endpoints(mb).set(source, url, secret=secret, new_secret_too=new_secret,
                                             allow_plain_http=allow_plain_http)
    await _audit(mb, actor, "webhook.set", ep.source, url=ep.url, secret="new" if generated or secret else "kept",
                 via=via)
    return ep, generated


async def remove_webhook(mb, actor: str, source: str, *, via: str) -> None:
    await _endpoints(mb).remove(source)
    await _audit(mb, actor, "webhook.remove", source, via=via)


@dataclass(frozen=True)
class SourceView:
    source: Source
    tokens: list[ApiToken]  # newest first
    endpoint: Endpoint | None


@dataclass(frozen=True)
class EndpointView:
    endpoint: Endpoint
    waiting: int = 0  # callbacks pending or being sent
    delivered: int = 0
    dead: int = 0
    source_known: bool = field(default=True)  # False: no workflow source of that name (e.g. [documents] webhook_source)


async def overview(mb) -> tuple[list[SourceView], list[EndpointView]]:
    """Every source with its tokens and endpoint, and every webhook endpoint with its outbox counts (no secrets used)."""
    sources, endpoints = _sources(mb), _endpoints(mb)
    eps = {ep.source: ep for ep in await endpoints.list()}
    srcs = await sources.list()
    by_source: dict[int, list[ApiToken]] = {}
    for tok in await sources.tokens.list():
        if tok.source_id is not None:
            by_source.setdefault(tok.source_id, []).append(tok)
    views = [SourceView(s, list(reversed(by_source.get(s.id, []))), eps.get(s.name)) for s in srcs]
    counts = await endpoints.counts()
    names = {s.name for s in srcs}
    ep_views = []
    for name, ep in eps.items():
        n = counts.get(name, {})
        ep_views.append(EndpointView(ep, n.get("pending", 0) + n.get("sending", 0), n.get("delivered", 0),
                                     n.get("dead", 0), name in names))
    return views, ep_views
