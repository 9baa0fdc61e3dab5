"""Fixtures: a running IMAP server per test (SQLite in tmp_path) and logged-in clients."""

from __future__ import annotations

import contextlib
import imaplib

import pytest

from .harness import PASSWORD, ImapServer


@pytest.fixture
def server(tmp_path):
    srv = ImapServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One server for a whole module, for modules whose tests only read the folder they share."""
    srv = ImapServer(tmp_path_factory.mktemp("module")).start()
    yield srv
    srv.stop()


@pytest.fixture
def imap(server):
    """imaplib, logged in as alice."""
    c = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    c.login("alice@city.test", PASSWORD)
    yield c
    with contextlib.suppress(Exception):  # the test may have logged out already
        c.logout()
