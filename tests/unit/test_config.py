"""Configuration: every key documented (docs/config.md in step), defaults safe, every problem reported."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from delivery import service
from mailboxes.service import open_mailboxes
from mailserver import config

ROOT = Path(__file__).resolve().parents[2]


def test_docs_file_is_in_step_with_the_keys():
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8").strip() == config.render_docs().strip(), \
        "regenerate with: postroom config docs > docs/config.md"


def test_every_key_has_a_doc():
    assert all(k.doc.strip() for k in config.KEYS)


def test_defaults_listen_on_loopback_unprivileged_ports():
    cfg = config.build({})
    for name in ("smtp", "submission", "submissions", "imap", "imaps", "http"):
        host, port = cfg.listen(name)
        assert host == "127.0.0.1" and port > 1024
    assert cfg.get("tls", "allow_plaintext_auth_on_loopback") is False
    assert cfg.get("storage", "mode") == "shared"


def test_empty_listener_disables_it():
    assert config.build({"listen": {"smtp": ""}}).listen("smtp") is None


def test_all_problems_reported_at_once():
    with pytest.raises(config.ConfigError) as ei:
        config.build({"server": {"hostname": 1, "nope": 2}, "listen": {"imap": "x"},
                      "queue": {"retry_delays": []}, "limits": {"max_recipients": -1}})
    assert len(ei.value.problems) == 5


def test_paths_relative_to_the_config_file(tmp_path):
    p = tmp_path / "etc" / "postroom.toml"
    p.parent.mkdir()
    p.write_text('[server]\ndata_dir = "data"\n')
    cfg = config.load(p)
    assert cfg.data_dir == tmp_path / "etc" / "data"
    assert cfg.storage_url == f"sqlite:///{tmp_path}/etc/data/postroom.db"


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)


def test_argon2_defaults_match_the_store_default():
    from mailboxes.passwords import DEFAULT_COST

    cfg = config.build({})
    assert {"time_cost": cfg.get("auth", "argon2_time_cost"), "memory_cost": cfg.get("auth", "argon2_memory_cost"),
            "parallelism": cfg.get("auth", "argon2_parallelism")} == DEFAULT_COST


def test_queue_lease_reaches_the_queue_and_must_be_a_second_or_more(tmp_path):
    with pytest.raises(config.ConfigError):
        config.build({"queue": {"lease": 0}})
    cfg = config.build({"server": {"data_dir": str(tmp_path)}, "queue": {"lease": 7, "mx_lookup": False},
                        "dkim": {"dns_lookup": False}})

    async def go():
        mb = await open_mailboxes(cfg.storage())
        try:
            assert service.build(mb, cfg).queue.lease == timedelta(seconds=7)
        finally:
            await mb.close()

    asyncio.run(go())


def test_client_ports_must_be_tcp_ports():
    with pytest.raises(config.ConfigError, match=r"\[clients\] imaps_port: 99999 is not a TCP port"):
        config.build({"clients": {"imaps_port": 99999}})
    assert config.build({"clients": {"imaps_port": 993}}).get("clients", "imaps_port") == 993
