"""Pure parts of logins: the credential cache, log-field escaping, app-password shapes, the [auth] config keys."""

from __future__ import annotations

import pytest

from mailboxes.model import Credential
from mailboxes.passwords import format_app_password, is_legacy_app_password, parse_app_password
from mailserver import config
from mailserver.credcache import CredentialCache
from mailserver.logsafe import LOG_FIELD_LIMIT, logfield


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_is_keyed_expires_and_is_bounded():
    clock = Clock()
    c = CredentialCache(clock=clock, ttl_s=60, max_entries=2)
    cred = Credential(1, "a@x.test", None, "$argon2id$...")
    k = c.key("a@x.test", "pw")
    assert len(k) == 32 and b"pw" not in k and k != c.key("a@x.test", "pw2") != c.key("b@x.test", "pw")
    assert k != CredentialCache(clock=clock).key("a@x.test", "pw")  # a random key per process
    c.put(k, cred)
    assert c.get(k) is cred and "$argon2id" not in repr(cred)
    clock.now += 60
    assert c.get(k) is None and len(c) == 0  # expired, not extended by the hit before
    for i in range(3):
        c.put(c.key(f"u{i}", "pw"), cred)
    assert len(c) == 2 and c.get(c.key("u0", "pw")) is None  # the oldest went first
    c.drop(c.key("u2", "pw"))
    assert c.get(c.key("u2", "pw")) is None
    off = CredentialCache(clock=clock, ttl_s=0)
    off.put(k, cred)
    assert off.get(k) is None


@pytest.mark.parametrize("value, shown", [
    ("alice@city.test", "alice@city.test"),
    ("x\r\nauth ok user=a", "x\\r\\nauth\\x20ok\\x20user=a"),
    ("tab\there\x00\x1b[31m", "tab\\there\\x00\\x1b[31m"),
    ("line\u2028sep\x85", "line\\u2028sep\\x85"),
    ("back\\x0a", "back\\\\x0a"),  # a typed escape cannot pass for a real one
    ("李娜@例子.测试", "李娜@例子.测试"),
    ("", '""'),
    (None, "-"),
])
def test_log_fields_are_one_token_on_one_line(value, shown):
    assert logfield(value) == shown


def test_log_fields_are_bounded():
    out = logfield("a" * 10_000)
    assert out == "a" * LOG_FIELD_LIMIT + "..."
    assert len(logfield("\n" * 10_000)) <= 4 * LOG_FIELD_LIMIT + 3


def test_app_password_shapes():
    assert parse_app_password(format_app_password(42, "0123456789abcdef0123")) == (42, "0123456789abcdef0123")
    for other in ("42-0123456789ABCDEF0123", "0-0123456789abcdef0123", "42-0123", "x42-0123456789abcdef0123",
                  "42-0123456789abcdef0123\n", "correct horse"):
        assert parse_app_password(other) is None, other
    assert is_legacy_app_password("0123456789abcdef0123") and not is_legacy_app_password("0123456789abcdef012")


def test_auth_keys_are_checked():
    cfg = config.build({"auth": {"argon2_time_cost": 2, "argon2_memory_cost": 19456, "argon2_parallelism": 1}})
    assert cfg.get("auth", "credential_cache_ttl") == 300 and cfg.get("auth", "argon2_memory_cost") == 19456
    for bad in ({"argon2_time_cost": 0}, {"argon2_parallelism": 0}, {"argon2_memory_cost": 4},
                {"argon2_parallelism": 8, "argon2_memory_cost": 32}, {"credential_cache_size": 0},
                {"credential_cache_ttl": -1}):
        with pytest.raises(config.ConfigError, match=r"\[auth\]"):
            config.build({"auth": bad})
