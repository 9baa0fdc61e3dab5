"""Where mail for a domain goes: the routes table (named links, a default "*"), else MX look-up.

Implementation notes
- Lookup order for a recipient domain: its own route, then the default route
  "*", then DNS: MX records by preference (RFC 5321 §5.1), the domain itself
  when there is no MX (implicit MX), and a permanent failure for a null MX
  (RFC 7505 §3) or a domain that does not exist.
- The resolver is passed in; tests pass one that knows nothing, so no test
  ever reaches the internet. The routes table is cached for a few seconds
  (a route change made with the CLI is picked up within ROUTE_CACHE_SECONDS).
- A route's AUTH secret is stored as given: it must be replayed to the smarthost.
- A route of kind "pull" (issue 12, `postroom route add DOMAIN pull:ACCOUNT`) has no
  host: mail for DOMAIN is held in the local account ACCOUNT for the district to fetch
  (delivery.pullroute); `targets()` never names a host for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select, update

from mailboxes import schema as t
from mailboxes.addresses import normalise_domain
from mailboxes.db import Database
from mailboxes.errors import InvalidInput, NotFound

TLS_MODES = ("required", "opportunistic", "none")
DEFAULT_ROUTE = "*"
SMTP, PULL = "smtp", "pull"  # route kinds
PULL_PREFIX = "pull:"
ROUTE_CACHE_SECONDS = 5.0
MAX_MX_HOSTS = 5


@dataclass(frozen=True)
class Route:
    domain: str
    host: str
    port: int
    tls: str
    auth_user: str | None = None
    auth_secret: str | None = field(default=None, repr=False)
    kind: str = SMTP  # pull: auth_user is the local account that holds the domain's mail


@dataclass(frozen=True)
class Target:
    """One host to try, with how to talk to it; `via` names the route or "mx" for the log."""

    host: str
    port: int
    tls: str
    via: str
    auth_user: str | None = None
    auth_secret: str | None = field(default=None, repr=False)


class RouteError(Exception):
    """No way to reach the domain: permanent (no such domain, null MX) or for now (DNS trouble)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


# An MX resolver: domain -> [(preference, host)]; [] when the domain exists without MX.
# Raises RouteError(permanent=True) for NXDOMAIN, RouteError(permanent=False) for SERVFAIL/timeouts.
MxResolver = Callable[[str], Awaitable[list[tuple[int, str]]]]


def parse_hostport(value: str, default_port: int = 25) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep:
        host, port = value.strip(), str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{value!r} is not HOST:PORT")
    return host, int(port)


def route_domain(domain: str) -> str:
    return DEFAULT_ROUTE if domain.strip() == DEFAULT_ROUTE else normalise_domain(domain)


async def no_dns(domain: str) -> list[tuple[int, str]]:
    """A resolver for closed networks and tests: every domain must have a route."""
    raise RouteError(f"no route for {domain} and DNS look-ups are disabled", permanent=False)


def dns_resolver(timeout: float = 10.0) -> MxResolver:
    """MX look-ups with dnspython's async resolver."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout

    async def mx(domain: str) -> list[tuple[int, str]]:
        try:
            answer = await resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise RouteError(f"domain {domain} does not exist", permanent=True) from None
        except dns.resolver.NoAnswer:
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise RouteError(f"DNS look-up for {domain} failed: {exc.__class__.__name__}", permanent=False) from None
        return [(int(r.preference), r.exchange.to_text().rstrip(".")) for r in answer]

    return mx


class Routes:
    def __init__(self, db: Database, *, resolver: MxResolver = no_dns,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.db = db
        self.resolver = resolver
        self.clock = clock
        self._cache: tuple[float, dict[str, Route]] | None = None

    async def add(self, domain: str, hostport: str, *, tls: str = "opportunistic",
                  auth_user: str | None = None, auth_secret: str | None = None) -> Route:
        """Add or replace the route for `domain` ("*" is the default route)."""
        dom = route_domain(domain)
        host, port = parse_hostport(hostport)
        if tls not in TLS_MODES:
            raise InvalidInput(f"--tls must be one of {', '.join(TLS_MODES)}")
        if auth_user and not auth_secret:
            raise InvalidInput("a route with --auth needs its password")
        if auth_user and tls == "none":
            raise InvalidInput("AUTH over a route without TLS would send the password in the clear")
        values = dict(host=host, port=port, tls=tls, auth_user=auth_user or None,
                      auth_secret=auth_secret if auth_user else None, kind=SMTP)
        await self._upsert(dom, values)
        return Route(dom, host, port, tls, values["auth_user"], values["auth_secret"])

    async def _upsert(self, dom: str, values: dict) -> None:
        async with self.db.write() as conn:
            found = (await conn.execute(select(t.routes.c.id).where(t.routes.c.domain == dom))).scalar()
            if found is None:
                await conn.execute(insert(t.routes).values(domain=dom, created_at=self.clock(), **values))
            else:
                await conn.execute(update(t.routes).where(t.routes.c.id == found).values(**values))
        self._cache = None

    async def add_pull(self, domain: str, account: str, secret: str) -> Route:
        """Add or replace DOMAIN's route by a pull route: its mail waits in the local `account` (issue 12)."""
        dom = route_domain(domain)
        if not account or "@" not in account:
            raise InvalidInput("a pull route names the local account that holds the mail: pull:ACCOUNT")
        if not secret:
            raise InvalidInput("a pull route needs its secret")
        values = dict(host="", port=0, tls="none", auth_user=account.lower(), auth_secret=secret, kind=PULL)
        await self._upsert(dom, values)
        return Route(dom, "", 0, "none", values["auth_user"], secret, PULL)

    async def pull_route(self, domain: str) -> Route | None:
        """The pull route mail for `domain` takes (its own route, else the default), or None."""
        table = await self._table()
        domain = domain.lower().rstrip(".")
        r = table.get(domain) or table.get(DEFAULT_ROUTE)
        return r if r is not None and r.kind == PULL else None

    async def remove(self, domain: str) -> None:
        dom = route_domain(domain)
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.routes).where(t.routes.c.domain == dom))
        self._cache = None
        if not res.rowcount:
            raise NotFound(f"no route for {dom}")

    async def list(self) -> list[Route]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.routes).order_by(t.routes.c.domain))).all()
        return [Route(r.domain, r.host, r.port, r.tls, r.auth_user, r.auth_secret, r.kind) for r in rows]

    async def _table(self) -> dict[str, Route]:
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > ROUTE_CACHE_SECONDS:
            self._cache = (now, {r.domain: r for r in await self.list()})
        return self._cache[1]

    async def targets(self, domain: str) -> list[Target]:
        """Hosts to try for `domain`, in order; raises RouteError when there are none."""
        domain = domain.lower().rstrip(".")
        table = await self._table()
        for key in (domain, DEFAULT_ROUTE):
            r = table.get(key)
            if r is not None and r.kind == PULL:  # held for the district to fetch; never sent by SMTP
                raise RouteError(f"{domain} is fetched by its district (pull route)", permanent=False)
            if r is not None:
                return [Target(r.host, r.port, r.tls, f"route:{key}", r.auth_user, r.auth_secret)]
        mx = await self.resolver(domain)
        if not mx:
            return [Target(domain, 25, "opportunistic", "implicit-mx")]  # RFC 5321 §5.1
        mx.sort()
        if len(mx) == 1 and mx[0][1] in ("", "."):
            raise RouteError(f"{domain} accepts no mail (null MX)", permanent=True)  # RFC 7505 §3
        return [Target(host, 25, "opportunistic", "mx") for _, host in mx[:MAX_MX_HOSTS] if host not in ("", ".")]
