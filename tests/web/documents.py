"""A whole server set up for official documents (a partner, a dispatcher, a registrar, the intake running) and its API tokens."""

from __future__ import annotations

from dataclasses import dataclass

from mailboxes.apitokens import ApiTokens
from mailboxes.documents import Documents
from mailserver.config import Config

from .harness import WebServer

DISPATCHER, REGISTRAR, OTHER = "fawen@city.test", "reg@city.test", "other@city.test"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40


def documents_server(tmp) -> WebServer:
    """Site "city" (documents@city.test); partner "futian" whose route is a closed port (mail waits queued)."""
    srv = WebServer(tmp, early_accounts=("documents", "reg", "fawen", "other"))  # the intake needs them at start
    values = {section: dict(keys) for section, keys in srv.config.values.items()}
    values["documents"].update(org="city", address="documents@city.test", registrars=[REGISTRAR],
                               dispatchers=[DISPATCHER, OTHER], webhook_source="registry")
    srv.config = Config(srv.config.path, values)
    return srv


@dataclass
class Tokens:
    dispatcher: str
    registrar: str
    admin: str  # alice (made an administrator)
    user: str  # bob
    other: str  # a second dispatcher


def setup_documents(web) -> Tokens:
    async def go() -> Tokens:
        from mailboxes.admindir import DirectoryAdmin

        admin = DirectoryAdmin(web.mb.directory)
        await admin.update_account(DISPATCHER, display_name="发文员")
        await admin.update_account(REGISTRAR, display_name="王登记")
        await admin.update_account("alice@city.test", role="admin")
        await Documents(web.mb.router.central).add_partner("futian", "futian.test", name="福田区税务局")
        tokens = ApiTokens(web.mb.router.central)
        out = []
        for who in (DISPATCHER, REGISTRAR, "alice@city.test", "bob@city.test", OTHER):
            secret, _ = await tokens.create((await web.mb.directory.account(who)).id, label="test")
            out.append(secret)
        return Tokens(*out)
    return web.run(go())


def manifest(number: str = "深地税发〔2026〕7号", **over) -> dict:
    obj = {"issuing_organ": ["深圳市地方税务局"], "document_number": number, "title": "关于做好汇算清缴工作的通知",
           "main_recipients": ["futian"], "date": "2026-12-03", "urgency": "特急"}
    obj.update(over)
    return obj


def register_incoming(web, number: str = "深发〔2026〕3号") -> int:
    """A document from futian registered here as if it had arrived; its registration id."""
    async def go() -> int:
        reg, _ = await Documents(web.mb.router.central).register(
            partner_org="futian", issuing_organ="福田区税务局", number=number, title="关于报送材料的函",
            urgency="加急", manifest="{}", message_id=f"<{number}@futian.test>")
        return reg.id
    return web.run(go())
