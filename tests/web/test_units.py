"""Pure parts of the webmail: the catalogue, language negotiation, RFC 6266 names, part paths, the sanitiser's allow-list."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from webmail import i18n, render

TEMPLATES = Path(__file__).resolve().parents[2] / "webmail" / "templates"


def test_both_locales_have_the_same_keys_and_every_key_used_exists():
    assert set(i18n.MESSAGES["zh"]) == set(i18n.MESSAGES["en"])
    used = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""_\(\s*["']([a-z_A-Z]+)["']""", path.read_text(encoding="utf-8")))
    assert used and used <= set(i18n.MESSAGES["zh"]), used - set(i18n.MESSAGES["zh"])
    for key, text in i18n.MESSAGES["zh"].items():
        assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", i18n.MESSAGES["en"][key])), key


def test_language_negotiation():
    assert i18n.negotiate(None, None) == "zh"
    assert i18n.negotiate("en", "zh-CN") == "en"
    assert i18n.negotiate("xx", "en-US,en;q=0.9") == "en"
    assert i18n.negotiate(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.negotiate(None, "fr;q=1, en;q=0.2") == "en"
    assert i18n.negotiate(None, "en;q=abc, fr") == "zh"
    assert i18n.negotiate(None, ",".join(["fr"] * 10_000) + ",en") == "zh"  # read 20 items at most


def test_rfc6266_content_disposition():
    cd = render.content_disposition("季度报告 2026.pdf")
    assert cd.startswith('attachment; filename="')
    ascii_part = cd.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_part.isascii() and ascii_part.endswith("2026.pdf")
    assert unquote(cd.split("filename*=UTF-8''", 1)[1]) == "季度报告 2026.pdf"
    hostile = render.content_disposition('a"b\r\nX-Evil: 1/../c.txt')
    assert "\r" not in hostile and "\n" not in hostile and hostile.count('"') == 2 and "/" not in hostile.split("''")[1]
    assert "filename*=UTF-8''attachment" in render.content_disposition(None)


def test_part_paths_are_bounded():
    assert render.parse_path("1.2.3") == (1, 2, 3)
    for bad in ("", "0", "1..2", "a", "1.-1", "1" * 100, ".".join(["1"] * 40), "123456"):
        assert render.parse_path(bad) is None, bad


def test_the_sanitiser_removes_script_and_keeps_presentation():
    out = render.sanitise_html('<table bgcolor="#fff"><tr><td style="color:red" onmouseover="x()">'
                               '<font color="red">字</font><a href="javascript:x()">j</a>'
                               '<a href="https://city.test/">k</a></td></tr></table><script>x()</script>'
                               '<svg onload="x()"></svg><iframe src="https://a"></iframe><form action="/x"></form>')
    assert "script" not in out and "onmouseover" not in out and "javascript" not in out and "svg" not in out
    assert "iframe" not in out and "form" not in out
    assert 'bgcolor="#fff"' in out and 'style="color:red"' in out and '<font color="red">字</font>' in out
    assert 'href="https://city.test/"' in out and 'rel="noopener noreferrer"' in out


def test_the_xss_corpus_has_at_least_30_distinct_vectors_of_every_kind_the_issue_names():
    """The sanitiser corpus (tests/web/xss_corpus.py, rendered in Chromium by test_browser): counted here."""
    import re

    from .xss_corpus import KINDS, MIN_VECTORS, SCRIPT_RAN, VECTORS, live

    assert len(set(VECTORS)) == len(VECTORS) >= MIN_VECTORS
    paths = [re.findall(r"\{R\}/(v\d+)", v) for v in VECTORS]
    assert all(paths) and len({p[0] for p in paths}) == len(VECTORS)  # each reaches its own path
    for kind, marker in KINDS.items():
        assert any(marker in v for v in VECTORS), kind
    scripted = [v for v in VECTORS if "fetch(" in v]
    assert len(scripted) >= 15 and all(SCRIPT_RAN in live(v, "http://r.test") for v in scripted)
