"""SMTP AUTH as a client sees it: parallel guesses throttled, escaped log fields, cached logins ended by changes."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from tests.support.hashers import counting

from .support import PASSWORD, RawClient, make_config, start_instance


def _plain(user: str | bytes, password: str) -> str:
    user = user.encode() if isinstance(user, str) else user
    return "AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + password.encode()).decode()


async def _auth(inst, user: str | bytes, password: str) -> int:
    c = await RawClient.connect(inst.port("submission"))
    try:
        await c.cmd("EHLO pc.city.test")
        return (await c.cmd(_plain(user, password)))[0]
    finally:
        await c.close()


def _config(tmp_path, storage_url, **limits):
    return make_config(tmp_path / "d", storage_url, tls={"allow_plaintext_auth_on_loopback": True},
                       limits=limits or {})


@pytest.mark.slow
async def test_thirty_parallel_wrong_passwords_check_at_most_the_limit(tmp_path, storage_url):
    hasher = counting(gate=2)  # the first two verifications wait for each other: all admitted at once
    inst = await start_instance(_config(tmp_path, storage_url, auth_failures=5), hasher=hasher, hash_slots=2)
    try:
        await inst.add_user("zhang.wei@city.test")
        clients = [await RawClient.connect(inst.port("submission")) for _ in range(30)]
        for c in clients:
            await c.cmd("EHLO pc.city.test")
        hasher.reset()
        replies = await asyncio.gather(*(c.cmd(_plain("zhang.wei@city.test", f"guess-{i}"))
                                         for i, c in enumerate(clients)))
        codes = [code for code, _ in replies]
        assert hasher.verifications <= 5
        assert codes.count(535) == hasher.verifications and codes.count(454) == 30 - hasher.verifications
        assert await _auth(inst, "zhang.wei@city.test", PASSWORD) == 454  # the account is throttled now
        for c in clients:
            await c.close()
    finally:
        await inst.stop()


async def test_a_user_name_with_a_newline_cannot_forge_a_log_line(tmp_path, storage_url, caplog):
    caplog.set_level(logging.INFO, logger="postroom")
    inst = await start_instance(_config(tmp_path, storage_url))
    try:
        await inst.add_user("zhang.wei@city.test")
        forged = b"x\nauth ok protocol=smtp user=zhang.wei@city.test ip=10.0.0.9"
        assert await _auth(inst, forged, "wrong") == 535
    finally:
        await inst.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("\n" in m or "\r" in m for m in messages)
    assert [m for m in messages if m.startswith("auth ")] == [
        "auth failed protocol=smtp user=x\\nauth\\x20ok\\x20protocol=smtp\\x20user=zhang.wei@city.test\\x20ip=10.0.0.9 "
        "ip=127.0.0.1"]


async def test_cached_logins_end_when_another_node_changes_the_password(tmp_path, storage_url):
    hasher = counting()
    cfg = _config(tmp_path, storage_url)
    inst = await start_instance(cfg, hasher=hasher)
    other = await open_mailboxes(cfg.storage(), hasher=FAST_HASHER)  # a second node on the same directory
    try:
        await inst.add_user("zhang.wei@city.test")
        hasher.reset()
        assert [await _auth(inst, "zhang.wei@city.test", PASSWORD) for _ in range(3)] == [235] * 3
        assert hasher.verifications == 1  # the others came from the cache
        await other.directory.set_password("zhang.wei@city.test", "new password")
        assert await _auth(inst, "zhang.wei@city.test", PASSWORD) == 535
        assert await _auth(inst, "zhang.wei@city.test", "new password") == 235
        app = await inst.mb.directory.add_app_password("zhang.wei@city.test", "phone")
        assert await _auth(inst, "zhang.wei@city.test", app) == 235
        [(app_id, _, _)] = await other.directory.list_app_passwords("zhang.wei@city.test")
        await other.directory.revoke_app_password("zhang.wei@city.test", app_id)
        assert await _auth(inst, "zhang.wei@city.test", app) == 535
        await other.directory.set_enabled("zhang.wei@city.test", False)
        assert await _auth(inst, "zhang.wei@city.test", "new password") == 535
    finally:
        await other.close()
        await inst.stop()


@pytest.mark.slow
async def test_guesses_spread_over_two_nodes_meet_one_limit(tmp_path, storage_url):
    """Two nodes (or worker processes) on one directory: the failed-login throttle counts their guesses together."""
    node_a = await start_instance(_config(tmp_path / "a", storage_url, auth_failures=5))
    node_b = await start_instance(_config(tmp_path / "b", storage_url, auth_failures=5))
    try:
        await node_a.add_user("zhang.wei@city.test")
        assert [await _auth(node_a, "zhang.wei@city.test", f"a-{i}") for i in range(3)] == [535] * 3
        assert [await _auth(node_b, "zhang.wei@city.test", f"b-{i}") for i in range(2)] == [535] * 2
        assert await _auth(node_a, "zhang.wei@city.test", PASSWORD) == 454
        assert await _auth(node_b, "zhang.wei@city.test", PASSWORD) == 454
    finally:
        await node_b.stop()
        await node_a.stop()
