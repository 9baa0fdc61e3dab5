"""`postroom partner` and `postroom dispatch` end to end through `cli.main`: partners, a dispatch queued once per number, status, readable errors."""

from __future__ import annotations

import json

import pytest

from .cli_support import run

pytestmark = pytest.mark.slow

PDF = b"%PDF-1.7\n" + b"0" * 5000


@pytest.fixture
def cfg(tmp_path):
    """SQLite only: the commands are thin over mailboxes.documents, whose PostgreSQL behaviour test_documents.py checks."""
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\nhostname = "mail.city.test"\n')
    return c


def test_partners_and_a_dispatch_from_the_command_line(cfg, tmp_path):
    run(cfg, "init", "--domain", "city.test")
    run(cfg, "domain", "add", "city.test")
    run(cfg, "user", "add", "fawen@city.test", "--password-stdin", stdin="pw-fawen-1\n")
    out = run(cfg, "partner", "add", "futian", "futian.test", "--name", "福田区税务局").stdout
    assert out == "partner futian (福田区税务局): documents signed by futian.test accepted, sent to documents@futian.test\n"
    run(cfg, "partner", "add", "luohu", "luohu.test", "--address", "shouwen@luohu.test")
    assert run(cfg, "partner", "list").stdout == ("futian\t福田区税务局\tfutian.test\tdocuments@futian.test\n"
                                                  "luohu\t\tluohu.test\tshouwen@luohu.test\n")
    bad = run(cfg, "partner", "add", "futian", "x.test", ok=False)
    assert bad.returncode == 1 and bad.stderr == "postroom: error: partner futian exists\n"

    (tmp_path / "通知.pdf").write_bytes(PDF)
    manifest = {"issuing_organ": ["深圳市地方税务局"], "document_number": "深地税发〔2026〕7号", "title": "关于做好汇算清缴工作的通知",
                "main_recipients": ["futian"], "copy_recipients": ["luohu"], "date": "2026-12-03", "urgency": "特急"}
    (tmp_path / "m.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    send = ("dispatch", "send", str(tmp_path / "m.json"), str(tmp_path / "通知.pdf"), "--from", "fawen@city.test")
    out = run(cfg, *send).stdout.splitlines()
    assert [line.split("\t")[0] for line in out] == ["futian", "luohu"] and all("\t250 " in line for line in out)
    status = run(cfg, "dispatch", "status", "深地税发〔2026〕7号").stdout.splitlines()
    assert [s.split("\t")[:3] for s in status] == [["深地税发〔2026〕7号", "futian", "queued"],
                                                   ["深地税发〔2026〕7号", "luohu", "queued"]]
    again = run(cfg, *send, ok=False)
    assert again.returncode == 1
    assert again.stderr == "postroom: error: document_number: 深圳市地方税务局 has already dispatched 深地税发〔2026〕7号 (已发过此文号)\n"
    (tmp_path / "bad.json").write_text(json.dumps({**manifest, "urgency": "很急"}), encoding="utf-8")
    bad = run(cfg, "dispatch", "send", str(tmp_path / "bad.json"), "--from", "fawen@city.test", ok=False)
    assert bad.returncode == 1 and bad.stderr.startswith("postroom: error: urgency: must be one of")
    bad = run(cfg, "dispatch", "sign", "收〔2026〕1号", "--by", "李四", ok=False)
    assert bad.returncode == 1 and "set [documents] org and address" in bad.stderr
    assert run(cfg, "dispatch", "registered").stdout == "" and run(cfg, "dispatch", "quarantine").stdout == ""
