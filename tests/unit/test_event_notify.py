"""Notification messages built from events: the headers that keep responders quiet, threading ids, templates and overrides."""

from __future__ import annotations

import email
from datetime import datetime, timezone
from email import policy

from bridges import notify
from delivery.autoreply import no_reply_reason, read_head
from mailboxes.events import Event
from mailboxes.mailsettings import DeliverySettings, OutOfOffice


def _event(**over) -> Event:
    values = dict(id=7, source_id=2, ext_id="ev-7", type="meeting_invitation", item="MTG-1", urgency="normal",
                  locale="en", payload={"title": "Budget meeting", "body": "Room 301", "data": {"when": "Mon 9:00"},
                                        "link": "https://oa.city.test/m/1", "recipients": ["alice@city.test"]},
                  fingerprint=b"x" * 32, recipients=((1, "alice@city.test"),), unknown=(), state="pending",
                  attempts=0, queue_id="ABCDEF", created_at=datetime.now(timezone.utc), sent_at=None, last_error=None)
    values.update(over)
    return Event(**values)


def _build(ev: Event, templates: notify.Templates | None = None) -> email.message.EmailMessage:
    raw = notify.build(ev, "oa", hostname="mail.city.test", to=["alice@city.test"],
                       templates=templates or notify.Templates())
    return email.message_from_bytes(raw, policy=policy.default)


def test_our_out_of_office_never_answers_a_notification_even_from_a_real_sender():
    raw = notify.build(_event(), "oa", hostname="mail.city.test", to=["alice@city.test"], templates=notify.Templates())
    on = DeliverySettings(OutOfOffice(enabled=True), (), frozenset({"alice@city.test"}))
    assert no_reply_reason("oa@city.test", read_head(raw), on) == "auto-submitted"
    # the same message without the notification's fields would be answered: the fields are what stops it
    plain = b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith((b"Auto-Submitted", b"List-")))
    assert no_reply_reason("oa@city.test", read_head(plain), on) is None


def test_threading_and_list_headers():
    m = _build(_event())
    again = _build(_event(id=8, ext_id="ev-8", queue_id="GHIJ"))
    other_item = _build(_event(id=9, item="MTG-2"))
    other_source = _build(_event(id=10, source_id=3))
    assert m["References"] == again["References"] == m["In-Reply-To"]
    assert m["Message-ID"] != again["Message-ID"]
    assert len({m["References"], other_item["References"], other_source["References"]}) == 3
    assert m["List-Id"] == "oa <oa.events.mail.city.test>"
    assert m["List-Unsubscribe"] == "<https://mail.city.test/settings/notifications>"
    assert m["Subject"] == "Budget meeting"
    assert _build(_event(urgency="urgent", locale="zh"))["Subject"] == "【紧急】Budget meeting"


def test_shipped_templates_for_each_type_and_locale():
    intros = {("approval_request", "zh"): "待审批", ("approval_request", "en"): "approval",
              ("document_arrived", "zh"): "新到公文", ("document_arrived", "en"): "document has arrived",
              ("meeting_invitation", "zh"): "邀请参加会议", ("meeting_invitation", "en"): "invited to a meeting",
              ("reminder", "zh"): "提醒", ("reminder", "en"): "Reminder",
              ("unknown_type", "en"): "A notice from oa"}
    for (type_, locale), intro in intros.items():
        m = _build(_event(type=type_, locale=locale))
        text, html = m.get_body(("plain",)).get_content(), m.get_body(("html",)).get_content()
        assert intro in text and intro in html, (type_, locale)
        assert "https://oa.city.test/m/1" in text and 'href="https://oa.city.test/m/1"' in html
        assert "Mon 9:00" in text and "Room 301" in html


def test_html_part_escapes_what_the_source_sent():
    ev = _event(payload={"title": "<script>x</script>", "body": "<b>hi</b>", "data": None, "link": "",
                         "recipients": []})
    html = _build(ev).get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;hi" in html


def test_an_administrator_overrides_a_template_in_the_data_directory(tmp_path):
    (tmp_path / "reminder.en.txt").write_text("OVERRIDDEN {{ title }} -> {{ link }}\n", encoding="utf-8")
    now = [0.0]
    t = notify.Templates(tmp_path, clock=lambda: now[0])
    m = _build(_event(type="reminder"), t)
    assert m.get_body(("plain",)).get_content().splitlines() == ["OVERRIDDEN Budget meeting -> https://oa.city.test/m/1"]
    assert "Reminder:" in m.get_body(("html",)).get_content()  # the HTML part still the shipped one
    (tmp_path / "reminder.en.txt").write_text("CHANGED {{ title }}\n", encoding="utf-8")
    now[0] += notify.Templates.RECHECK
    assert "CHANGED" in _build(_event(type="reminder"), t).get_body(("plain",)).get_content()  # no restart


def test_an_override_added_while_running_is_taken_up_after_the_recheck(tmp_path):
    """The chosen template is remembered for Templates.RECHECK seconds, then the directory is looked at again."""
    now = [100.0]
    t = notify.Templates(tmp_path / "templates", clock=lambda: now[0])  # the directory does not exist yet
    assert "Reminder:" in _build(_event(type="reminder"), t).get_body(("plain",)).get_content()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "reminder.en.txt").write_text("ADDED {{ title }}\n", encoding="utf-8")
    now[0] += notify.Templates.RECHECK / 2
    assert "Reminder:" in _build(_event(type="reminder"), t).get_body(("plain",)).get_content()  # not yet
    now[0] += notify.Templates.RECHECK
    assert _build(_event(type="reminder"), t).get_body(("plain",)).get_content().splitlines() == ["ADDED Budget meeting"]
    (tmp_path / "templates" / "reminder.en.txt").unlink()
    now[0] += notify.Templates.RECHECK
    assert "Reminder:" in _build(_event(type="reminder"), t).get_body(("plain",)).get_content()  # removed: shipped again


def test_an_overridden_base_template_is_taken_up_by_the_templates_that_extend_it(tmp_path):
    """The shipped templates `{% extends %}` base.*; compiled templates are kept (no stat a render),
    so a changed base must still reach them once the directory is looked at again."""
    now = [0.0]
    t = notify.Templates(tmp_path, clock=lambda: now[0])
    assert "BASE" not in _build(_event(type="reminder"), t).get_body(("plain",)).get_content()
    (tmp_path / "base.en.txt").write_text("BASE {% block intro %}{% endblock %} {{ title }}\n", encoding="utf-8")
    now[0] += notify.Templates.RECHECK
    assert _build(_event(type="reminder"), t).get_body(("plain",)).get_content().startswith("BASE ")
    (tmp_path / "base.en.txt").write_text("BASE2 {{ title }}\n", encoding="utf-8")
    now[0] += notify.Templates.RECHECK
    assert _build(_event(type="reminder"), t).get_body(("plain",)).get_content().splitlines() == ["BASE2 Budget meeting"]


def test_templates_are_compiled_at_start_and_a_broken_override_is_reported_there(tmp_path, caplog):
    shipped = notify.Templates().warm()
    assert shipped == len(list(notify.SHIPPED.iterdir())) >= 20
    (tmp_path / "reminder.en.txt").write_text("{% if %}broken\n", encoding="utf-8")
    t = notify.Templates(tmp_path)
    with caplog.at_level("WARNING", logger="postroom.events"):
        assert t.warm() == shipped - 1  # the override hides the shipped reminder.en.txt
    assert "reminder.en.txt does not compile" in caplog.text
    assert "waits for your approval" in _build(_event(type="approval_request"), t).get_body(("plain",)).get_content()  # the rest renders


def test_the_message_written_directly_reads_back_whole():
    """notify writes the MIME itself (not the email package): what any reader parses is what was rendered."""
    title = "请审批：" + "采购申请 purchase request " * 6  # long, mixed: encoded-words, folded
    to = [f"person.number.{i}@city.test" for i in range(notify.MAX_TO_LISTED)]
    t = notify.Templates()
    ev = _event(locale="zh", payload={"title": title, "body": "第一行\n第二行\r\n--=_ not a boundary", "data": None,
                                      "link": "https://oa.city.test/m/1", "recipients": []})
    raw = notify.build(ev, "oa.dept", hostname="mail.city.test", to=to, templates=t)
    m = email.message_from_bytes(raw, policy=policy.default)
    assert m["Subject"] == title and [a.addr_spec for a in m["To"].addresses] == to
    assert m["From"].addresses[0].display_name == "oa.dept" and m.get_content_type() == "multipart/alternative"
    assert not m.defects and all(not p.defects for p in m.walk())
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    ctx = notify._context(ev, "oa.dept", "mail.city.test")
    text, html = m.get_body(("plain",)).get_content(), m.get_body(("html",)).get_content()
    assert text.replace("\r\n", "\n") == t.render(ev.type, "zh", "txt", ctx).replace("\r\n", "\n")
    assert html.replace("\r\n", "\n") == t.render(ev.type, "zh", "html", ctx).replace("\r\n", "\n")
    assert b"Content-Transfer-Encoding: 7bit" in notify._part("plain", "Short ASCII lines\nstay readable\n")
    assert b"Content-Transfer-Encoding: base64" in notify._part("plain", "x" * 79)


def test_a_line_break_in_a_title_never_starts_a_header_field():
    ev = _event(payload={"title": "Budget\r\nBcc: mallory@evil.test", "body": "", "data": None, "link": "",
                         "recipients": []})
    m = _build(ev)
    assert m["Bcc"] is None and m["Subject"] == "Budget Bcc: mallory@evil.test"
