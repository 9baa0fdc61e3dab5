"""`postroom route add DOMAIN pull:ACCOUNT`, `postroom route list` and `postroom pull now` in a subprocess, as an administrator types them; readable errors."""

from __future__ import annotations

import socket

import pytest

from .cli_support import run

pytestmark = pytest.mark.slow


@pytest.fixture
def cfg(tmp_path):
    """SQLite only: the commands are thin over delivery.routes and bridges.pull (PG: tests/store/test_pulled.py)."""
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\nhostname = "mail.city.test"\n')
    return c


def test_a_pull_route_makes_its_account_prints_its_password_once_and_refuses_a_person(cfg):
    run(cfg, "init", "--domain", "city.test")
    run(cfg, "domain", "add", "city.test")
    out = run(cfg, "route", "add", "district.test", "pull:Pull-D@city.test").stdout.splitlines()
    assert out[0] == "route district.test -> pull:pull-d@city.test (held here; the district fetches it over IMAP)"
    assert out[1].startswith("password for pull-d@city.test (give it to the district, [pull] password_file): ")
    first = out[1].rsplit(" ", 1)[1]
    assert len(first) >= 40
    assert run(cfg, "route", "list").stdout == "district.test\tpull:pull-d@city.test\ttls=none\tpull-d@city.test\n"
    again = run(cfg, "route", "add", "district.test", "pull:pull-d@city.test").stdout.splitlines()[1].rsplit(" ", 1)[1]
    assert again != first  # a new password for the same route's account
    run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="pw-wang-123\n")
    bad = run(cfg, "route", "add", "other.test", "pull:wang@city.test", ok=False)
    assert bad.returncode == 1
    assert bad.stderr == "postroom: error: wang@city.test is an existing account, not a pull account: name a new one\n"


def test_pull_now_says_when_pull_mode_is_off_or_the_city_cannot_be_reached(cfg, tmp_path):
    run(cfg, "init", "--domain", "district.test")
    off = run(cfg, "pull", "now", ok=False)
    assert off.returncode == 1 and off.stderr == "postroom: error: pull mode is off: set [pull] upstream, account and password\n"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg.write_text(cfg.read_text() + f'[pull]\nupstream = "127.0.0.1:{port}"\naccount = "pull-d@city.test"\n'
                                     'password = "x"\ntimeout = 5\n')
    down = run(cfg, "pull", "now", ok=False)
    assert down.returncode == 1
    assert down.stderr.startswith(f"postroom: error: pull from pull-d@city.test@127.0.0.1:{port} failed: "), down.stderr
    cfg.write_text(cfg.read_text().replace('password = "x"\n', 'password_file = "pull.password"\n'))
    bad = run(cfg, "config", "check", ok=False)
    assert f"[pull] password_file: {tmp_path}/data/pull.password does not exist" in bad.stderr
    cfg.write_text(cfg.read_text().replace('account = "pull-d@city.test"\n', ""))
    bad = run(cfg, "config", "check", ok=False)
    assert "[pull] account: pull mode needs the account and its password (or password_file)" in bad.stderr
