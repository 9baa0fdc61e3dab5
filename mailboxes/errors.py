"""Typed store errors; each interface (SMTP, IMAP, web, CLI) maps them to its replies in one place."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: a readable message, safe to show to the user who caused it."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class InvalidInput(StoreError):
    pass


class OverQuota(StoreError):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class PermissionDenied(StoreError):
    pass


class ReadOnly(StoreError):
    pass


class UnderHold(StoreError):
    """A deletion refused because a legal hold covers what it would remove (mailboxes/holds.py)."""
