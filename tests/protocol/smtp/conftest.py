"""Fixtures: a Postroom instance on ephemeral loopback ports, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from .support import make_config, start_instance


@pytest.fixture
def smtp_config(tmp_path, storage_url):
    return make_config(tmp_path / "data", storage_url)


@pytest.fixture
async def city(smtp_config):
    inst = await start_instance(smtp_config)
    await inst.add_user("zhang.wei@city.test")
    await inst.add_user("li.na@city.test")
    try:
        yield inst
    finally:
        await inst.stop()
