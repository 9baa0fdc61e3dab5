"""Rich-text compose over real HTTP: the editor's HTML is cleaned by the server and sent as multipart/alternative."""

from __future__ import annotations

import email
import email.policy

import pytest

from webmail import richtext

from .harness import csrf_of
from .test_compose import _form, _mails

PAYLOADS = (
    '<script>alert(1)</script>',
    '<img src=x onerror="alert(2)">',
    '<a href="javascript:alert(3)">j</a>',
    '<b onclick="alert(4)" style="color:red">b</b>',
    '<svg onload="alert(5)"><script>alert(6)</script></svg>',
    '<iframe src="https://evil.test/"></iframe>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==">d</a>',
    '<style>body{background:url(https://evil.test/x)}</style>',
    '<form action="https://evil.test/"><input name=x></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.test/">',
    '<p style="x:expression(alert(8))">e</p>',
    '<a href="  JaVaScRiPt:alert(9)">k</a>',
)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_sanitiser_keeps_nothing_that_runs_or_reaches_out(payload):
    out = richtext.clean("<p>ok " + payload + "</p>").lower()
    for bad in ("<script", "onerror", "onclick", "onload", "javascript:", "style", "<iframe", "evil.test", "data:",
                "<form", "<input", "<meta", "<svg", "<img", "expression", "alert(1)", "alert(6)"):
        assert bad not in out, (payload, out)
    assert out.startswith("<p>ok")


def test_the_sanitiser_keeps_the_toolbar_formats_and_safe_links():
    markup = ('<div><b>bold</b> <i>it</i> <u>under</u></div><ul><li>one</li></ul><ol><li>first</li></ol>'
              '<a href="https://example.org/a?b=1">web</a> <a href="mailto:bob@city.test">mail</a>')
    out = richtext.clean(markup)
    for keep in ("<b>bold</b>", "<i>it</i>", "<u>under</u>", "<ul><li>one</li></ul>", "<ol><li>first</li></ol>",
                 'href="https://example.org/a?b=1"', 'href="mailto:bob@city.test"'):
        assert keep in out
    text = richtext.as_text(out)
    assert "bold it under" in text and "* one" in text and "1. first" in text


async def test_a_payload_typed_into_the_editor_never_reaches_the_sent_message(web, client):
    _, page = await client.sign_in()
    markup = "<div>各位好，<b>请注意</b></div>" + "".join(PAYLOADS)
    r, page = await client.post("/compose", _form(csrf_of(page), mode="new", to="bob@city.test", cc="",
                                                  subject="rich", body="fallback", body_html=markup))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    for user, folder in (("bob", "INBOX"), ("alice", "Sent")):
        [(_, raw)] = _mails(web, user, folder)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        html = msg.get_body(("html",)).get_content()
        assert "<b>请注意</b>" in html
        lowered = html.lower()
        for bad in ("<script", "onerror", "onclick", "onload", "javascript:", "style=", "<style", "evil.test",
                    "data:", "<iframe", "<svg", "<img", "<form", "<meta http"):
            assert bad not in lowered, bad
        text = msg.get_body(("plain",)).get_content()
        assert "各位好，请注意" in text and "alert" not in text and "fallback" not in text


async def test_a_rich_draft_comes_back_cleaned_into_the_editor(web, client):
    _, page = await client.sign_in()
    r, page = await client.post("/compose/draft", _form(
        csrf_of(page), mode="new", to="", cc="", subject="rich draft", body="x",
        body_html='<b>kept</b><img src=x onerror="alert(1)">'))
    assert r.status == 200
    assert 'name="body_html" id="body_html" value="&lt;b&gt;kept&lt;/b&gt;"' in page
    [(_, raw)] = _mails(web, "alice", "Drafts")
    assert b"onerror" not in raw
