"""`postroom config check` with labels enforced: someone must be able to approve held mail (issue 13)."""

from __future__ import annotations

from .cli_support import cfg, ready_with_user, run  # noqa: F401 (cfg is a fixture)


def _labels(cfg, approvers: str) -> None:
    text = cfg.read_text().split("[labels]")[0]
    cfg.write_text(text + f'[labels]\nenabled = true\napprovers = "{approvers}"\n')


def test_config_check_names_an_office_that_cannot_approve(cfg):
    ready_with_user(cfg, "wang@city.test")
    run(cfg, "user", "add", "li@city.test", "--password-stdin", stdin="pw-li-123\n")
    for approvers, says in (("", "empty while labels are enabled"),
                            ("office@city.test", "office@city.test is no group or account with an enabled"),
                            ("wang@city.test", "wang@city.test has one member, wang@city.test: nobody approves")):
        _labels(cfg, approvers)
        p = run(cfg, "config", "check", ok=False)
        assert p.returncode == 1 and says in p.stderr, (approvers, p.stderr)
    run(cfg, "group", "add", "office@city.test", "--name", "办公室")
    run(cfg, "group", "members", "office@city.test", "--add", "wang@city.test", "li@city.test")
    _labels(cfg, "office@city.test")
    assert run(cfg, "config", "check").stdout.strip() == "configuration OK"
