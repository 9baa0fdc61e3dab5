"""What the self-service pages need from the server: the second-factor check, re-authentication and the mail listeners."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailboxes.model import Account
from mailboxes.secondfactor import SecondFactors

from .context import Login

# (account, code, client ip) -> whether the code is right; raises SignInRefused(retry_after) when
# throttled. The composition root passes mailserver's Authenticator.second_factor, adapted.
CodeCheck = Callable[[Account, str, str | None], Awaitable[bool]]


@dataclass(frozen=True)
class Endpoint:
    """One mail listener as a client should use it: protocol, port and how TLS starts."""

    protocol: str  # "imap" or "smtp"
    port: int
    security: str  # "tls" (implicit, RFC 8314), "starttls", or "none"


@dataclass(frozen=True)
class MailListeners:
    """The host name clients connect to and the listeners they may use, best first per protocol."""

    hostname: str
    endpoints: tuple[Endpoint, ...] = ()

    def best(self, protocol: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.protocol == protocol), None)

    def of(self, protocol: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.protocol == protocol]


def listeners_from(hostname: str, bound: dict[str, tuple[str, int]], *, tls: bool,
                   public_ports: dict[str, int] | None = None) -> MailListeners:
    """From the bound listener addresses (`imap`, `imaps`, `submission`, `submissions`); implicit TLS first (RFC 8314 §3).

    `public_ports` names the port clients must use for a listener when it differs from the bound
    one (NAT, a load balancer: the [clients] keys); 0 or absent keeps the bound port.
    """
    order = (("imaps", "imap", "tls"), ("imap", "imap", "starttls"),
             ("submissions", "smtp", "tls"), ("submission", "smtp", "starttls"))
    public_ports = public_ports or {}
    out = []
    for name, protocol, security in order:
        if name in bound:
            out.append(Endpoint(protocol, public_ports.get(name) or bound[name][1], security if tls else "none"))
    return MailListeners(hostname, tuple(out))


async def _refuse(account: Account, code: str, ip: str | None) -> bool:
    return False  # no check given: no code is ever right (a secure default)


@dataclass
class SelfService:
    """Given to make_app by the composition root; the defaults refuse what they cannot check."""

    factors: SecondFactors | None = None  # default: the central database's (make_app fills it)
    check_code: CodeCheck = _refuse
    reauth: Login | None = None  # the account's own password only (no app passwords); default: refuse
    listeners: MailListeners = field(default_factory=lambda: MailListeners("localhost"))
