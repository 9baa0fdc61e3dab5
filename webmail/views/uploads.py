"""Compose uploads: POST /compose/upload streams one file into the account's spool and answers its id (JSON).

The compose page's script sends each chosen file here at once (XMLHttpRequest, so the page
shows progress), then the form carries only the ids; send and save-draft read the spool.
The request must carry the CSRF token in the X-CSRF-Token header: the body is never read
as a form (it could be large), so there is no form field to take it from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from .. import i18n
from ..context import LOCALE
from ..sessions import require_account
from ..uploads import SWEEP_EVERY, UploadError, UploadSpool, UploadTooLarge

log = logging.getLogger("postroom.webmail.uploads")

UPLOADS = web.AppKey("uploads", UploadSpool)
CHUNK_BYTES = 64 << 10  # read from the request and written to disk at a time
MULTIPART_OVERHEAD = 16 << 10  # boundary and part headers allowed beyond the file itself


def _error(request: web.Request, key: str, status: int, **kw) -> web.Response:
    _ = i18n.translator(request[LOCALE])
    return web.json_response({"error": _(key, **kw)}, status=status)


def limit_text(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB"


async def upload(request: web.Request) -> web.Response:
    account = require_account(request)
    spool = request.app[UPLOADS]
    if spool.due():
        await asyncio.to_thread(spool.sweep)
    limit = limit_text(spool.max_file_bytes)
    if request.content_length is not None and request.content_length > spool.max_file_bytes + MULTIPART_OVERHEAD:
        return _error(request, UploadTooLarge.key, 413, limit=limit)  # refused before a byte is stored
    if request.content_type != "multipart/form-data":
        return _error(request, "upload_failed", 400)
    reader = await request.multipart()
    part = await reader.next()
    while part is not None and not (isinstance(part, BodyPartReader) and part.name == "file" and part.filename):
        await part.release()  # bounded: release() reads and drops the part chunk by chunk
        part = await reader.next()
    if part is None:
        return _error(request, "upload_failed", 400)

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            yield chunk
    try:
        entry = await spool.store(account.id, part.filename, part.headers.get("Content-Type", ""), chunks())
    except UploadTooLarge:
        return _error(request, UploadTooLarge.key, 413, limit=limit)
    except UploadError as exc:
        return _error(request, exc.key, 413, limit=limit_text(spool.max_account_bytes))
    return web.json_response({"id": entry.id, "name": entry.filename, "size": entry.size}, status=201)


async def remove(request: web.Request) -> web.Response:
    """POST /compose/upload/remove (id): the remove button; 404 when the id is not one of this account's."""
    account = require_account(request)
    data = await request.post()
    uid = data.get("id")
    if not isinstance(uid, str) or not request.app[UPLOADS].remove(account.id, uid):
        raise web.HTTPNotFound()
    return web.Response(status=204)


async def sweeper(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: sweep expired uploads at start and every SWEEP_EVERY; the spool is closed at stop."""
    spool = app[UPLOADS]

    async def loop() -> None:
        while True:
            try:
                await asyncio.to_thread(spool.sweep)
            except OSError:
                log.exception("sweeping the upload spool failed")
            await asyncio.sleep(SWEEP_EVERY.total_seconds())
    task = asyncio.create_task(loop())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
