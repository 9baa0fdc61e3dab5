"""`postroom user away`, run in-process through the real argparse parser and handler."""

from __future__ import annotations

import pytest

from mailboxes.errors import NotFound
from mailboxes.mailsettings import OOO_ZONE
from mailserver.admin import Admin, AdminError
from mailserver.cli import HANDLERS, build_parser

from .support import make_config


@pytest.fixture
async def admin(tmp_path, storage_url):
    a = Admin(make_config(tmp_path / "data", storage_url), actor="test")
    await a.open()
    try:
        await a.mb.directory.add_domain("city.test")
        await a.mb.add_account("li.na@city.test", password="pw")
        yield a
    finally:
        await a.close()


async def run(admin: Admin, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return await HANDLERS[args.command](admin, args)


async def test_away_on_show_and_off(admin, capsys):
    assert await run(admin, "user", "away", "li.na@city.test", "--first", "2026-12-20", "--last", "2026-12-31",
                     "--text", "年假，一月回来。", "--days", "3") == 0
    li = await admin.mb.directory.account("li.na@city.test")
    ooo = await admin.mb.settings.out_of_office(li.id)
    assert ooo.enabled and ooo.days == 3 and ooo.body == "年假，一月回来。"
    assert ooo.start.astimezone(OOO_ZONE).isoformat() == "2026-12-20T00:00:00+08:00"
    assert ooo.end.astimezone(OOO_ZONE).isoformat() == "2027-01-01T00:00:00+08:00"
    assert li.id in await admin.mb.settings.active()
    capsys.readouterr()
    assert await run(admin, "user", "away", "li.na@city.test") == 0
    assert "\ton\tfirst=2026-12-20\tlast=2026-12-31\tdays=3" in capsys.readouterr().out
    assert await run(admin, "user", "away", "li.na@city.test", "--off") == 0
    assert not (await admin.mb.settings.out_of_office(li.id)).enabled
    with pytest.raises(AdminError):
        await run(admin, "user", "away", "li.na@city.test", "--first", "20.12.2026", "--text", "x")
    with pytest.raises(NotFound):
        await run(admin, "user", "away", "nobody@city.test")
