"""`postroom token add/list/revoke` end to end through `cli.main`: the secret shown once, scope, revocation, audit."""

from __future__ import annotations

import re

import pytest

from mailboxes.model import Role

from .cli_support import cfg, ready_with_user, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow


def test_token_add_list_revoke(cfg):  # noqa: F811
    ready_with_user(cfg, "boss@city.test", "pw-boss-1", role=Role.ADMIN, department=("tax", "税务处"))
    out = run(cfg, "token", "add", "boss@city.test", "--department", "tax", "--label", "ops").stdout
    m = re.search(r"token (\d+) for boss@city.test: (pr_[A-Za-z0-9_-]{43})\n", out)
    assert m, out
    listed = run(cfg, "token", "list").stdout
    assert f"{m.group(1)}\tadmin\tboss@city.test\ttax\t" in listed and "last used never\tactive\tops" in listed
    assert m.group(2) not in listed  # shown once only
    assert run(cfg, "token", "revoke", m.group(1)).stdout == f"revoked token {m.group(1)}\n"
    assert "\trevoked " in run(cfg, "token", "list", "--owner", "boss@city.test").stdout
    bad = run(cfg, "token", "revoke", "999", ok=False)
    assert bad.returncode == 1 and bad.stderr == "postroom: error: no API token 999\n"
    bad = run(cfg, "token", "add", "boss@city.test", "--department", "nope", ok=False)
    assert bad.returncode == 1 and "no department nope" in bad.stderr
