"""The `postroom` command end to end in a fresh interpreter (`python -m mailserver.cli`): init, the commands before it, config check."""

from __future__ import annotations

import pytest

from .cli_support import cfg, run  # noqa: F401 (cfg is a fixture)

# Each command here is a fresh interpreter (about 1 s); the quick subset leaves these to `make test`. The other
# commands' tests (test_admin_cli_directory.py, test_admin_cli_import.py, test_admin_cli_maintenance.py, the token,
# dispatch and events ones) call the same `cli.main` in the test's process (cli_support.run).
pytestmark = pytest.mark.slow


def test_init_demo_creates_store_cert_and_accounts_once(cfg, tmp_path):
    out = run(cfg, "init", "--demo", "--domain", "city.test", fresh=True).stdout
    assert "zhang.wei@city.test password" in out and "li.na@city.test password" in out
    assert (tmp_path / "data" / "tls" / "cert.pem").exists()
    assert oct((tmp_path / "data" / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    again = run(cfg, "init", "--demo", "--domain", "city.test", fresh=True).stdout
    assert "password" not in again  # passwords are shown once
    users = run(cfg, "user", "list", fresh=True).stdout
    assert "zhang.wei@city.test\tadmin" in users and "李娜" in users
    assert run(cfg, "config", "check", fresh=True).stdout.strip() == "configuration OK"


def test_commands_before_init_say_so(tmp_path):
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\n')
    p = run(c, "user", "list", ok=False, fresh=True)
    assert p.returncode == 1 and "run `postroom init` first" in p.stderr
    assert not (tmp_path / "data" / "postroom.db").exists()


def test_config_check_reports_every_problem(tmp_path):
    c = tmp_path / "bad.toml"
    c.write_text('[server]\nhostname = 5\nbogus = 1\n[listen]\nsmtp = "nowhere"\n[storage]\nmode = "weird"\n'
                 '[nosuch]\nx = 1\n')
    p = run(c, "config", "check", ok=False, fresh=True)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2
    assert len(lines) == 5, lines
    assert any("[server] hostname: expected a string" in line for line in lines)
    assert any("[server] bogus: unknown key" in line for line in lines)
    assert any("[listen] smtp" in line for line in lines)
    assert any("[storage] mode: must be one of" in line for line in lines)
    assert any("[nosuch]: unknown section" in line for line in lines)
