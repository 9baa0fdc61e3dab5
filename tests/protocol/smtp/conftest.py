"""Fixtures: a Postroom instance on ephemeral loopback ports, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from .support import make_config, running


@pytest.fixture
def smtp_config(tmp_path, storage_url):
    return make_config(tmp_path / "data", storage_url)


@pytest.fixture
async def city(smtp_config):
    async with running(smtp_config) as inst:
        yield inst
