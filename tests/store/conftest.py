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
