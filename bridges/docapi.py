"""The official-documents JSON API under /api/v1/: dispatch and tracking (发文) for dispatchers, incoming documents and signing for them (收文) for registrars.

Mounted by the webmail's API sub-application as "person" routes: an admin-kind bearer token
(`postroom token` / the admin console) authenticates, and the handler gets the token's owner.

Who may call what
- /documents (dispatch, tracking): server administrators and the accounts listed in
  `[documents] dispatchers`; the dispatch is sent as the token owner (submit() checks the sender).
  A dispatcher sees the documents it sent; an administrator sees all. Others: 403; another
  dispatcher's document id: 404 (ids from URLs are never trusted).
- /incoming (registered documents, 签收): the accounts in `[documents] registrars` only; 403 for
  everyone else, 404 when this site receives no documents (`[documents] org` not set).

Bodies
- multipart/form-data: a part named `document` (the manifest JSON, GB/T 9704 elements) and one
  part per file (its filename names it); at most MAX_DISPATCH_BYTES of files in all.
- application/json: {"document": {...}, "files": {"name": "base64"}} for small documents, at most
  MAX_JSON_DISPATCH_BYTES in all.
  When the manifest lists no `attachments`, they are described from the files (SHA-256, size).
Errors are RFC 9457 problem details; a bad element names it in `field` (RFC 9457 §3.2); a used
document number is 409 naming it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from aiohttp import web

from mailboxes.documents import Documents, Registration, Tracking
from mailboxes.errors import InvalidInput, NotFound
from mailboxes.model import Account, Role

from .api import PROBLEM_TYPE, Problem, _json
from .dispatch import Dispatcher
from .intake import Intake
from .manifest import MAX_FILE_NAME, MAX_FILES, MAX_MANIFEST_BYTES, Document, ManifestError, describe_file

MAX_DISPATCH_BYTES = 100 << 20  # the files of one multipart dispatch, in all (held in memory while messages are built)
MAX_JSON_DISPATCH_BYTES = 8 << 20  # a JSON dispatch with base64 files: for small documents only
MAX_LIST = 200  # documents or registrations in one list answer
MULTIPART_CHUNK = 64 * 1024
STEPS = ("queued", "sent", "delivered", "registered", "signed")


def _iso(d) -> str | None:
    return None if d is None else d.isoformat()


def tracking_json(rows: list[Tracking]) -> dict:
    """One document and its recipient organisations, each step with its time (null: not yet)."""
    first = rows[0]
    return {"id": first.document_id, "number": first.number, "issuing_organ": first.issuing_organ,
            "title": first.title, "urgency": first.urgency or None,
            "recipients": [{"org": r.org, "state": r.state,
                            **{step: _iso(getattr(r, f"{step}_at")) for step in STEPS},
                            "failed": _iso(r.failed_at), "failure": r.failure or None,
                            "registration_number": r.registration_number or None,
                            "signed_by": r.signed_by or None} for r in rows]}


def registration_json(r: Registration) -> dict:
    return {"id": r.id, "registration_number": r.registration_number, "number": r.number,
            "from_org": r.partner_org, "issuing_organ": r.issuing_organ, "title": r.title,
            "urgency": r.urgency or None, "received": _iso(r.received_at), "signed": _iso(r.signed_at),
            "signed_by": r.signed_by or None}


async def _multipart(request: web.Request) -> tuple[object, dict[str, bytes]]:
    """The `document` part (parsed JSON) and the file parts of a multipart/form-data dispatch."""
    obj, files, total = None, {}, 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.name == "document" and not part.filename:
                buf = bytearray()
                while chunk := await part.read_chunk(MULTIPART_CHUNK):
                    buf += chunk
                    if len(buf) > MAX_MANIFEST_BYTES:
                        raise Problem(413, "Content Too Large", f"document: at most {MAX_MANIFEST_BYTES} bytes",
                                      field="document")
                try:
                    obj = json.loads(bytes(buf))
                except (ValueError, RecursionError):
                    raise Problem(400, "Bad Request", "document: not JSON", field="document") from None
                continue
            name = part.filename
            if not name:
                raise Problem(400, "Bad Request", f"part {str(part.name)[:40]!r}: a file part needs a filename",
                              field="files")
            if name in files or len(files) >= MAX_FILES or len(name) > MAX_FILE_NAME:
                raise Problem(400, "Bad Request", f"files: at most {MAX_FILES} files with distinct names of at most "
                                                  f"{MAX_FILE_NAME} characters", field="files")
            data = bytearray()
            while chunk := await part.read_chunk(MULTIPART_CHUNK):
                data += chunk
                total += len(chunk)
                if total > MAX_DISPATCH_BYTES:
                    raise Problem(413, "Content Too Large", f"files: at most {MAX_DISPATCH_BYTES >> 20} MB in all",
                                  field="files")
            files[name] = bytes(data)
    except (ValueError, AssertionError) as exc:  # aiohttp's answer to a malformed multipart body
        raise Problem(400, "Bad Request", f"malformed multipart body ({exc})"[:200], field="") from None
    return obj, files


def _json_files(obj: dict) -> dict[str, bytes]:
    raw = obj.get("files", {})
    if not isinstance(raw, dict) or len(raw) > MAX_FILES:
        raise Problem(400, "Bad Request", f"files: an object of at most {MAX_FILES} name: base64", field="files")
    files = {}
    for name, b64 in raw.items():
        where = f"files.{name[:MAX_FILE_NAME]}"
        if len(name) > MAX_FILE_NAME or not isinstance(b64, str):
            raise Problem(400, "Bad Request", f"{where}: a file name and its base64 content", field=where)
        try:
            files[name] = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise Problem(400, "Bad Request", f"{where}: not base64", field=where) from None
    return files


def _document(obj: object, files: dict[str, bytes]) -> Document:
    if not isinstance(obj, dict):
        raise Problem(400, "Bad Request", "document: the manifest object (GB/T 9704 elements) is required",
                      field="document")
    if "attachments" not in obj:
        obj = {**obj, "attachments": [asdict(describe_file(n, d)) for n, d in files.items()]}
    try:
        return Document.from_json(obj)
    except ManifestError as e:
        raise Problem(400, "Bad Request", f"document.{e.field}: {e.message}", field=f"document.{e.field}") from None


@dataclass
class DocumentsApi:
    documents: Documents
    dispatcher: Dispatcher
    intake: Intake | None
    dispatchers: frozenset[str]  # addresses (lower case) that may dispatch besides administrators
    registrars: frozenset[str]

    def may_dispatch(self, actor: Account) -> bool:
        """Whether `actor` dispatches and tracks documents (an administrator, or one of `[documents] dispatchers`)."""
        return actor.role == Role.ADMIN or actor.address.lower() in self.dispatchers

    def sender_filter(self, actor: Account) -> str | None:
        """Whose dispatched documents `actor` sees: None (all) for an administrator, else its own."""
        return None if actor.role == Role.ADMIN else actor.address

    def may_register(self, actor: Account) -> bool:
        """Whether `actor` sees incoming documents and signs for them here."""
        return actor.address.lower() in self.registrars and self.intake is not None

    def require_dispatcher(self, actor: Account) -> None:
        if not self.may_dispatch(actor):
            raise Problem(403, "Forbidden", "only dispatchers ([documents] dispatchers) and administrators")

    def require_registrar(self, actor: Account) -> Intake:
        if actor.address.lower() not in self.registrars:
            raise Problem(403, "Forbidden", "only registrars ([documents] registrars) see incoming documents")
        if self.intake is None:
            raise Problem(404, "Not Found", "this site receives no documents ([documents] org is not set)")
        return self.intake

    async def tracked(self, actor: Account, doc_id: int) -> list[Tracking]:
        """One document's recipient rows as `actor` may see them; Problem 403 (not a dispatcher) or 404."""
        self.require_dispatcher(actor)
        rows = await self.documents.tracking(document_id=doc_id, sender=self.sender_filter(actor))
        if not rows:
            raise Problem(404, "Not Found", "no such document")
        return rows

    async def incoming(self, actor: Account, reg_id: int) -> Registration:
        """A registered document for a registrar; Problem 403 (not a registrar) or 404."""
        self.require_registrar(actor)
        try:
            return await self.documents.registration_by_id(reg_id)
        except NotFound:
            raise Problem(404, "Not Found", "no such incoming document") from None

    async def sign_for(self, actor: Account, reg_id: int) -> tuple[Registration, bool]:
        """签收 as `actor` (the intake sends the sign-for receipt back); (it, True when this call signed it)."""
        intake = self.require_registrar(actor)
        reg = await self.incoming(actor, reg_id)
        try:
            return await intake.sign(reg.registration_number, actor.display_name or actor.address)
        except InvalidInput as exc:
            raise Problem(400, "Bad Request", str(exc), field="") from None

    async def _read(self, request: web.Request) -> tuple[Document, dict[str, bytes]]:
        if request.content_type == "multipart/form-data":
            obj, files = await _multipart(request)
        else:
            body = await _json(request, MAX_JSON_DISPATCH_BYTES)
            if not isinstance(body, dict):
                raise Problem(400, "Bad Request", "a JSON object {document, files}", field="")
            files = _json_files(body)
            obj = body.get("document")
        return _document(obj, files), files

    async def post_document(self, request: web.Request, actor: Account) -> web.Response:
        """POST /api/v1/documents: dispatch; 201 with the document's tracking (every recipient queued)."""
        try:
            self.require_dispatcher(actor)
            doc, files = await self._read(request)
            try:
                out = await self.dispatcher.send(doc, files, sender=actor.address, account=actor)
            except ManifestError as e:
                if e.field == "document_number":
                    raise Problem(409, "Conflict", e.message, field="document.document_number",
                                  number=str(doc.document_number)) from None
                raise Problem(400, "Bad Request", f"document.{e.field}: {e.message}",
                              field=f"document.{e.field}") from None
        except Problem as p:
            return p.response()
        if len(out.refused) == len(out.replies):
            return Problem(422, "Unprocessable Content", "every message was refused: "
                           + "; ".join(out.replies.values()), field="").response()
        rows = await self.documents.tracking(document_id=out.document_id)
        body = {**tracking_json(rows), "replies": out.replies, "refused": list(out.refused)}
        return web.json_response(body, status=201, headers={"Location": f"/api/v1/documents/{out.document_id}"})

    async def list_documents(self, request: web.Request, actor: Account) -> web.Response:
        """GET /api/v1/documents: the latest dispatched documents (a dispatcher's own; all for an administrator)."""
        try:
            self.require_dispatcher(actor)
        except Problem as p:
            return p.response()
        rows = await self.documents.tracking(sender=self.sender_filter(actor), limit=MAX_LIST * 10)
        by_doc: dict[int, list[Tracking]] = {}
        for r in rows:
            by_doc.setdefault(r.document_id, []).append(r)
        return web.json_response({"documents": [tracking_json(v) for v in list(by_doc.values())[:MAX_LIST]]})

    async def get_document(self, request: web.Request, actor: Account) -> web.Response:
        """GET /api/v1/documents/{id}: one document's tracking per recipient organisation."""
        try:
            self.require_dispatcher(actor)
            try:
                doc_id = int(request.match_info["id"])
            except ValueError:
                raise Problem(404, "Not Found", "no such document") from None
            rows = await self.tracked(actor, doc_id)
        except Problem as p:
            return p.response()
        return web.json_response(tracking_json(rows))

    async def list_incoming(self, request: web.Request, actor: Account) -> web.Response:
        """GET /api/v1/incoming[?unsigned=1]: registered incoming documents, newest first."""
        try:
            self.require_registrar(actor)
        except Problem as p:
            return p.response()
        unsigned = request.query.get("unsigned", "") in ("1", "true")
        regs = await self.documents.registrations(unsigned_only=unsigned, limit=MAX_LIST)
        return web.json_response({"documents": [registration_json(r) for r in regs]})

    async def sign(self, request: web.Request, actor: Account) -> web.Response:
        """POST /api/v1/incoming/{id}/sign: 签收 as the token owner; the sign-for receipt goes back to the sender."""
        try:
            self.require_registrar(actor)
            try:
                reg_id = int(request.match_info["id"])
            except ValueError:
                raise Problem(404, "Not Found", "no such incoming document") from None
            reg, new = await self.sign_for(actor, reg_id)
        except Problem as p:
            return p.response()
        return web.json_response({**registration_json(reg), "new": new})

    def routes(self) -> list[tuple[str, str, str, Callable[..., Awaitable[web.StreamResponse]]]]:
        return [
            ("POST", "/documents", "person", self.post_document),
            ("GET", "/documents", "person", self.list_documents),
            ("GET", "/documents/{id}", "person", self.get_document),
            ("GET", "/incoming", "person", self.list_incoming),
            ("POST", "/incoming/{id}/sign", "person", self.sign),
        ]


__all__ = ["DocumentsApi", "MAX_DISPATCH_BYTES", "MAX_JSON_DISPATCH_BYTES", "PROBLEM_TYPE"]
