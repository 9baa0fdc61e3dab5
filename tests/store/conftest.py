"""Store-layer fixtures: an opened store with the local domain city.test, on each back-end."""

from __future__ import annotations

import pytest

from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER


@pytest.fixture
async def mb(storage_url):
    m = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    await m.directory.add_domain("city.test")
    yield m
    await m.close()


@pytest.fixture
async def two_stores(storage_url):
    """Two opened stores on one database (as two processes or nodes), with city.test and an account a@city.test."""
    m1 = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    m2 = await open_mailboxes(StorageConfig(url=storage_url), hasher=FAST_HASHER)
    try:
        await m1.directory.add_domain("city.test")
        yield m1, m2, await m1.add_account("a@city.test", password="pw")
    finally:
        await m1.close()
        await m2.close()
