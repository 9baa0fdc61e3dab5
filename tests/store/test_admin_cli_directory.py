"""`postroom domain/department/user/group/alias` end to end through `cli.main`, with readable errors."""

from __future__ import annotations

import pytest

from .cli_support import cfg, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow


def test_directory_commands_and_readable_errors(cfg):
    run(cfg, "init")
    run(cfg, "domain", "add", "City.Test.")
    assert run(cfg, "domain", "list").stdout.split() == ["city.test"]
    run(cfg, "department", "add", "bureau", "市税务局", "--kind", "bureau")
    run(cfg, "department", "add", "finance", "财务处", "--parent", "bureau")
    assert "finance\tdepartment\tbureau\t-\t财务处" in run(cfg, "department", "list").stdout
    run(cfg, "user", "add", "wang@city.test", "--name", "王芳", "--department", "finance", "--password-stdin",
        stdin="s3cret\n")
    p = run(cfg, "user", "add", "wang@city.test", "--password-stdin", stdin="x\n", ok=False)
    assert p.returncode == 1 and p.stderr.strip() == "postroom: error: wang@city.test is already an account"
    p = run(cfg, "user", "add", "bad address", ok=False)
    assert p.returncode == 1 and p.stderr.startswith("postroom: error: invalid address") and "\n" not in p.stderr.strip()
    p = run(cfg, "user", "add", "x@elsewhere.test", ok=False)
    assert "not a local domain" in p.stderr
    run(cfg, "group", "add", "all@city.test", "--name", "全体", "--policy", "members")
    assert run(cfg, "group", "members", "all@city.test", "--add", "wang@city.test").stdout.split() == ["wang@city.test"]
    run(cfg, "alias", "add", "fang@city.test", "wang@city.test")
    assert "fang@city.test\twang@city.test" in run(cfg, "alias", "list").stdout
    run(cfg, "user", "disable", "wang@city.test")
    assert "disabled" in run(cfg, "user", "list").stdout
    p = run(cfg, "domain", "remove", "city.test", ok=False)
    assert p.returncode == 1 and "still has 1 accounts" in p.stderr
    p = run(cfg, "user", "passwd", "nobody@city.test", "--password-stdin", stdin="x\n", ok=False)
    assert "no account nobody@city.test" in p.stderr
