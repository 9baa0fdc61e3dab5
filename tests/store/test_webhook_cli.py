"""`postroom webhook set/list/remove` end to end through `cli.main`: the secret shown once, kept, rotated, given; policy errors."""

from __future__ import annotations

import re

import pytest

from .test_admin_cli import cfg, run  # noqa: F401 (cfg is a fixture)

pytestmark = pytest.mark.slow
SECRET = re.compile(r"secret: (whsec_[A-Za-z0-9+/]{43}=)\n")


def test_webhook_set_list_remove(cfg):  # noqa: F811
    run(cfg, "init")
    out = run(cfg, "webhook", "set", "oa", "https://oa.city.test/hooks?token=abc").stdout
    assert out.startswith("webhook for oa: https://oa.city.test/hooks?token=abc\n")
    first = SECRET.search(out).group(1)
    out = run(cfg, "webhook", "set", "oa", "https://oa2.city.test/hooks").stdout
    assert out == "webhook for oa: https://oa2.city.test/hooks\n"  # the secret is kept, and not shown again
    rotated = SECRET.search(run(cfg, "webhook", "set", "oa", "https://oa2.city.test/hooks", "--new-secret").stdout)
    assert rotated and rotated.group(1) != first
    given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    out = run(cfg, "webhook", "set", "registry", "http://127.0.0.1:9000/cb", "--secret-stdin", stdin=given + "\n").stdout
    assert out == "webhook for registry: http://127.0.0.1:9000/cb\n"
    listed = run(cfg, "webhook", "list").stdout
    assert listed.startswith("oa\thttps://oa2.city.test/hooks\twaiting 0\tdelivered 0\tdead 0\tchanged ")
    assert "\nregistry\thttp://127.0.0.1:9000/cb\twaiting 0" in listed
    assert first not in listed and rotated.group(1) not in listed and given not in listed
    bad = run(cfg, "webhook", "set", "oa", "http://oa.city.test/hooks", ok=False)
    assert bad.returncode == 1 and "plain http is refused" in bad.stderr
    bad = run(cfg, "webhook", "set", "oa", "https://oa.city.test/", "--secret-stdin", stdin="hunter2\n", ok=False)
    assert bad.returncode == 1 and "whsec_" in bad.stderr and "hunter2" not in bad.stderr
    assert run(cfg, "webhook", "remove", "oa").stdout == "removed the webhook of oa\n"
    bad = run(cfg, "webhook", "remove", "oa", ok=False)
    assert bad.returncode == 1 and bad.stderr == "postroom: error: no webhook endpoint for source oa\n"
    assert run(cfg, "webhook", "list").stdout.startswith("registry\t")
