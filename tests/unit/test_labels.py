"""Classification labels: which label a message asks for, where it may go, how it is stamped (issue 13)."""

from __future__ import annotations

import pytest

from delivery.labels import DEFAULT_LABELS, HEADER, Labels, check_labels, stamped
from mailserver import config as config_mod

LABELS = Labels()
LOCAL, PARTNERS = frozenset({"city.test"}), frozenset({"district.test"})


def msg(head: str = "", body: str = "Hello.\r\n") -> bytes:
    return f"From: a@city.test\r\nSubject: report\r\n{head}\r\n{body}".encode()


@pytest.mark.parametrize("head,want", [
    ("", "内部"),  # the default: the second of the list
    (f"{HEADER}: public\r\n", "公开"),
    (f"{HEADER}: 敏感\r\n", "敏感"),
    (f"{HEADER}: SENSITIVE\r\n", "敏感"),
    (f"{HEADER}: nonsense\r\n", "内部"),  # unknown names fall back to the subject tag or the default
])
def test_label_from_header_or_default(head, want):
    assert LABELS.of(msg(head)).zh == want


def test_label_from_subject_tag():
    assert LABELS.of("Subject: [敏感] 名单\r\n\r\nx".encode()).zh == "敏感"
    assert LABELS.of("Subject: [公开] 通知\r\n\r\nx".encode()).zh == "公开"


def test_reach():
    public, internal, sensitive = LABELS.labels
    for lb in LABELS.labels:
        assert LABELS.allows(lb, "city.test", local=LOCAL, partners=PARTNERS)
    assert LABELS.allows(internal, "district.test", local=LOCAL, partners=PARTNERS)
    assert not LABELS.allows(sensitive, "district.test", local=LOCAL, partners=PARTNERS)
    assert not LABELS.allows(internal, "example.com", local=LOCAL, partners=PARTNERS)
    assert LABELS.allows(public, "example.com", local=LOCAL, partners=PARTNERS)


def test_stamp_replaces_any_label_header_and_adds_a_banner():
    data = stamped(msg(f"{HEADER}: public\r\nContent-Type: text/plain; charset=utf-8\r\n"), LABELS.find("敏感"))
    assert data.count(b"X-Postroom-Classification") == 1
    assert "X-Postroom-Classification: 敏感".encode() in data
    assert data.endswith("\r\n\r\n【敏感 SENSITIVE】\r\n\r\nHello.\r\n".encode())


def test_stamp_leaves_multipart_and_encoded_bodies_alone():
    mp = msg('MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n',
             "--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n")
    out = stamped(mp, LABELS.find("内部"))
    assert out.endswith(mp.split(b"\r\n\r\n", 1)[1]) and b"INTERNAL" not in out
    b64 = msg("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n", "SGVsbG8=\r\n")
    assert stamped(b64, LABELS.find("内部")).endswith(b"\r\n\r\nSGVsbG8=\r\n")


def test_configured_list_is_checked():
    assert check_labels(DEFAULT_LABELS) is None
    assert "reach" in check_labels([{"zh": "甲", "en": "a", "reach": "mars"}])
    assert "unique" in check_labels([{"zh": "甲", "en": "a", "reach": "anyone"},
                                     {"zh": "甲", "en": "b", "reach": "anyone"}])
    with pytest.raises(config_mod.ConfigError):
        config_mod.build({"labels": {"list": [{"zh": "甲", "en": "a"}]}})
    with pytest.raises(config_mod.ConfigError):
        config_mod.build({"labels": {"default": "绝密"}})
    cfg = config_mod.build({"labels": {"enabled": True, "default": "public"}})
    assert Labels(cfg.get("labels", "list"), cfg.get("labels", "default")).default.zh == "公开"


@pytest.mark.parametrize("subject", [
    "[内部] 通知", "【内部】通知", "［内部］通知", "回复：【内部】通知",
    "=?UTF-8?B?44CQ5YaF6YOo44CR6YCa55+l?=",  # 【内部】通知 as a mail client encodes it (RFC 2047)
    "=?GB2312?B?W8Tasr9dILvh0uk=?=",  # [内部] 会议 in GB2312
    "Re: a long subject that a client folds\r\n =?UTF-8?Q?=E3=80=90=E5=86=85=E9=83=A8=E3=80=91?=",  # folded
])
def test_a_subject_tag_is_found_in_either_bracket_form_and_encoded(subject):
    assert LABELS.of(f"Subject: {subject}\r\n\r\nx".encode()).zh == "内部"
    assert LABELS.of(f"{HEADER}: 公开\r\nSubject: {subject}\r\n\r\nx".encode()).zh == "公开"  # the header wins


def test_each_label_has_its_bracket_forms():
    assert LABELS.of("Subject: 【敏感】名单\r\n\r\nx".encode()).zh == "敏感"
    assert LABELS.of("Subject: 【公开】通知\r\n\r\nx".encode()).zh == "公开"


def test_a_tag_not_in_brackets_and_a_bracketless_name_are_not_tags():
    assert LABELS.of("Subject: 内部通知 [公开 资料\r\n\r\nx".encode()).zh == "内部"  # the default
    assert LABELS.of("Subject: 【敏感\r\n\r\nx".encode()).zh == "内部"


def test_carried_labels_are_the_most_restricted_marker_in_the_body_only():
    labels = Labels()
    public, internal, sensitive = labels.labels
    head = b"From: a@city.test\r\nX-Postroom-Classification: \xe5\x85\xac\xe5\xbc\x80\r\nSubject: s\r\n\r\n"
    assert labels.carried(head + b"plain words\r\n") is None
    assert labels.carried(head + "【内部 INTERNAL】\r\n".encode()) == internal
    assert labels.carried(head + "> 【内部 INTERNAL】\r\n> 【敏感 SENSITIVE】\r\n".encode()) == sensitive
    assert labels.carried(head + b"--b\r\n\r\nX-Postroom-Classification: \xe6\x95\x8f\xe6\x84\x9f\r\n") == sensitive
    assert labels.carried(head + b"> [INTERNAL]\r\n") == internal  # the ASCII banner of a body without UTF-8
    assert labels.carried("X-Postroom-Classification: 敏感\r\n\r\nno marker\r\n".encode()) is None  # own header
    assert labels.of(head + "【敏感 SENSITIVE】\r\n".encode()) == sensitive  # raised above the 公开 asked for
    assert labels.of(head + "【公开 PUBLIC】\r\n".encode(), sensitive) == public  # the header asked; never lowered
    assert labels.of(b"Subject: s\r\n\r\n" + "【公开 PUBLIC】\r\n".encode(), sensitive) == sensitive


def _encoded(body: str, *, charset: str = "utf-8", cte: str = "base64", subtype: str = "plain") -> bytes:
    import base64
    import quopri
    raw = body.encode(charset)
    data = base64.encodebytes(raw) if cte == "base64" else quopri.encodestring(raw)
    return (f"From: a@city.test\r\nSubject: Re: s\r\nMIME-Version: 1.0\r\nContent-Type: text/{subtype}; "
            f"charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").encode() + data.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("data", [
    _encoded("No.\r\n\r\n> 【敏感 SENSITIVE】\r\n> Hello.\r\n"),  # Foxmail, Outlook: UTF-8 in base64
    _encoded("不行。\r\n\r\n> 【敏感 SENSITIVE】\r\n", charset="gbk"),  # GBK in base64
    _encoded("不行。\r\n\r\n> 【敏感 SENSITIVE】\r\n", charset="gb18030", cte="quoted-printable"),
    _encoded("<p>No.</p><blockquote>&#12304;敏感 SENSITIVE&#12305;<br>Hello.</blockquote>", subtype="html"),
    _encoded("No.\r\n\r\n> [SENSITIVE]", charset="us-ascii"),  # the ASCII banner on the last line
    (b"From: a@city.test\r\nSubject: Re: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n"
     b"\r\n--b\r\n" + _encoded("No.\r\n> 【敏感 SENSITIVE】\r\n").split(b"MIME-Version: 1.0\r\n", 1)[1]
     + b"\r\n--b--\r\n"),  # inside a multipart, base64
], ids=["base64-utf8", "base64-gbk", "qp-gb18030", "html-entities", "ascii-banner-last-line", "multipart"])
def test_a_quoted_banner_is_found_whatever_the_clients_encoding(data):
    sensitive = LABELS.labels[2]
    assert LABELS.carried(data) == sensitive
    assert LABELS.of(data) == sensitive  # raised above the default 内部


def test_encoded_bodies_without_a_banner_carry_nothing_and_plain_text_is_not_decoded(monkeypatch):
    from delivery import labels as labels_mod
    assert LABELS.carried(_encoded("不行。\r\n\r\n> 敏感的事另说\r\n", charset="gbk")) is None
    assert LABELS.carried(_encoded("<p>SENSITIVE [SENSITIVE] later</p>", subtype="html")) is None

    def no_parse(_data):
        raise AssertionError("a plain UTF-8 body is searched as written, not parsed")
    monkeypatch.setattr(labels_mod, "parse_message", no_parse)
    assert LABELS.carried(msg("Content-Type: text/plain; charset=utf-8\r\n", "普通的回复\r\n")) is None
    assert LABELS.carried(msg("", "plain words\r\n")) is None
    with pytest.raises(AssertionError):  # anything else is decoded
        LABELS.carried(msg("Content-Type: text/plain; charset=gbk\r\n", "plain\r\n"))
