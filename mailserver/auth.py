"""Logins for SMTP AUTH, IMAP and webmail: one Authenticator, throttled per client address and per account."""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

from mailboxes.directory import Directory
from mailboxes.model import Account

from .throttle import AuthThrottle

log = logging.getLogger("postroom.auth")


class AuthFailed(Exception):
    """Wrong credentials or a disabled account (never says which)."""


class AuthThrottled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; retry in {int(retry_after) + 1} s")
        self.retry_after = retry_after


def is_loopback(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass
class Authenticator:
    directory: Directory
    throttle: AuthThrottle

    @classmethod
    def create(cls, directory: Directory, *, max_failures: int = 5, window_s: int = 300) -> "Authenticator":
        return cls(directory, AuthThrottle(clock=time.monotonic, max_failures=max_failures, window_s=window_s))

    async def login(self, username: str, password: str, *, ip: str | None, protocol: str) -> Account:
        """The account, or AuthThrottled / AuthFailed. Logs one line per attempt, never the password."""
        user = (username or "").strip().lower()
        wait = self.throttle.check(ip or "-", user)
        if wait is not None:
            log.warning("auth throttled protocol=%s user=%s ip=%s retry_after=%.0f", protocol, user, ip, wait)
            raise AuthThrottled(wait)
        acct = await self.directory.authenticate(user, password) if user and password else None
        if acct is None:
            self.throttle.record_failure(ip or "-", user)
            log.warning("auth failed protocol=%s user=%s ip=%s", protocol, user, ip)
            raise AuthFailed("authentication failed")
        self.throttle.record_success(ip or "-", user)
        log.info("auth ok protocol=%s user=%s ip=%s", protocol, acct.address, ip)
        return acct
