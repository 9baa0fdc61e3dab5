"""Administrator operations behind the CLI (and later the admin console): audited, with progress bars."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from mailboxes import errors
from mailboxes.archive import ArchiveReport, archive_year
from mailboxes.reindex import reindex_partition
from mailboxes.importexport import envelope_sender, mbox_entry, read_maildir, read_mbox, source_size
from mailboxes.ingest import prepare
from mailboxes.model import Role
from mailboxes.service import Mailboxes, open_mailboxes
from mailboxes.store import Delivery

from . import tls
from .auth import password_hasher
from .config import Config

log = logging.getLogger("postroom.admin")

IMPORT_BATCH = 64  # messages written per group-commit burst during import
DEMO_USERS = (("zhang.wei", "张伟"), ("li.na", "李娜"))


class AdminError(Exception):
    pass


class Admin:
    def __init__(self, config: Config, *, actor: str) -> None:
        self.config = config
        self.actor = actor
        self._mb: Mailboxes | None = None

    @property
    def mb(self) -> Mailboxes:
        assert self._mb is not None, "store not opened"
        return self._mb

    def _db_exists(self) -> bool:
        url = self.config.storage_url
        if url.startswith("sqlite"):
            return Path(url.split(":///", 1)[1]).exists()
        return True

    async def open(self, *, must_exist: bool = False) -> Mailboxes:
        if must_exist and not self._db_exists():
            raise AdminError(f"no database at {self.config.storage_url}; run `postroom init` first")
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._mb = await open_mailboxes(self.config.storage(), hasher=password_hasher(self.config))
        return self._mb

    async def close(self) -> None:
        if self._mb is not None:
            await self._mb.close()
            self._mb = None

    async def audited(self, action: str, target: str = "", **detail) -> None:
        """Record an admin action in the audit log and write its one log line."""
        await self.mb.directory.audit(self.actor, action, target, **detail)
        log.info("admin action=%s target=%s actor=%s", action, target, self.actor)

    async def init(self, *, demo: bool, domain: str) -> list[str]:
        out = []
        data = self.config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        cert, key = self.config.tls_cert, self.config.tls_key
        if not cert.exists() or not key.exists():
            tls.make_self_signed(cert, key, self.config.hostname)
            out.append(f"created a self-signed TLS certificate {cert}")
        await self.open()
        if demo:
            d = self.mb.directory
            if domain not in await d.local_domains():
                await d.add_domain(domain)
                await self.audited("domain.add", domain)
                out.append(f"demo domain {domain}")
            for local, name in DEMO_USERS:
                addr = f"{local}@{domain}"
                try:
                    await d.account(addr)
                    continue
                except errors.NotFound:
                    pass
                pw = secrets.token_urlsafe(9)
                role = Role.ADMIN if local == DEMO_USERS[0][0] else Role.USER
                await self.mb.add_account(addr, password=pw, display_name=name, role=role,
                                          quota_bytes=self.config.get("limits", "default_quota_bytes"))
                await self.audited("user.add", addr, role=role.value)
                out.append(f"demo account {addr} password {pw}  (shown once)")
        out.append(f"store ready at {self.config.storage_url}")
        return out

    async def check(self) -> list[str]:
        """Deeper checks than parsing: files, partitions, listeners (each problem one line)."""
        problems: list[str] = []
        cfg = self.config
        problems += tls.check_files(cfg.tls_cert, cfg.tls_key)
        if cfg.get("pull", "upstream"):  # pull mode (docs/pull.md): its files must be readable at start
            for key in ("password_file", "ca_file"):
                name = cfg.get("pull", key)
                path = Path(name) if not name or Path(name).is_absolute() else cfg.data_dir / name
                if name and not path.is_file():
                    problems.append(f"[pull] {key}: {path} does not exist")
        st = cfg.storage()
        if st.mode in ("department", "hybrid") and not st.departments:
            problems.append(f"[storage] departments: mode {st.mode} needs at least one department code")
        if st.mode in ("shared", "year") and st.departments:
            problems.append(f"[storage] departments: ignored in mode {st.mode}; use department or hybrid")
        seen: dict[tuple[str, int], str] = {}
        for name in ("smtp", "submission", "submissions", "imap", "imaps", "http"):
            hp = cfg.listen(name)
            if hp is None:
                continue
            if hp in seen:
                problems.append(f"[listen] {name}: {hp[0]}:{hp[1]} is also used by {seen[hp]}")
            seen[hp] = name
        if self._db_exists() and st.departments:
            try:
                await self.open()
                codes = {d.code for d in await self.mb.directory.list_departments()}
                for code in st.departments:
                    if code not in codes:
                        problems.append(f"[storage] departments: no department {code!r} in the directory")
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                problems.append(f"[storage] url: cannot open the database: {exc}")
        if cfg.get("labels", "enabled") and self._db_exists():
            problems += await self._check_approvers()
        return problems

    async def _check_approvers(self) -> list[str]:
        """Labels enforced: someone must be able to approve what no department leader decides (issue 13)."""
        office = self.config.get("labels", "approvers")
        if not office:
            return ["[labels] approvers: empty while labels are enabled: mail held from a department without a "
                    "leader, or from an account in none, waits for ever"]
        try:
            await self.open()
            res = await self.mb.directory.resolve(office)
        except errors.StoreError as exc:
            return [f"[labels] approvers: {office}: {exc}"]
        if res is None or not any(a.enabled for a in res.local):
            return [f"[labels] approvers: {office} is no group or account with an enabled local member"]
        if len(res.local) == 1:
            return [f"[labels] approvers: {office} has one member, {res.local[0].address}: nobody approves "
                    "their own mail, so that member's held mail would wait for ever; add a second"]
        return []

    async def import_mail(self, address: str, folder: str, kind: str, path: str) -> tuple[int, int]:
        """Import into a folder; returns (imported, skipped as already present).

        Messages already in the folder (same bytes) are skipped, so an import
        that was interrupted, or that failed on a bad message, can simply be
        run again: it adds only what is missing, never a duplicate.
        """
        acct = await self.mb.directory.account(address)
        store = self.mb.store
        try:
            f = await store.folder(acct, folder)
        except errors.NotFound:
            f = await store.create_folder(acct, folder)
        reader = read_mbox(path) if kind == "mbox" else read_maildir(path)
        total = source_size(kind, path)
        imported = skipped = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"import {Path(path).name}",
                  disable=not sys.stderr.isatty() and not os.environ.get("POSTROOM_PROGRESS"),
                  file=sys.stderr) as bar:
            batch: list[tuple[Delivery, int]] = []

            async def flush() -> None:
                nonlocal imported, skipped
                have = await store.present(f.ref, [d.message.sha256 for d, _ in batch])
                todo = []
                for d, _ in batch:
                    if d.message.sha256 in have:
                        skipped += 1
                    else:
                        have.add(d.message.sha256)
                        todo.append(d)
                # Submitted together, in order: the group committer writes them in one
                # transaction and keeps their order (UIDs follow the file).
                results = await asyncio.gather(*(store.deliver(d) for d in todo))
                for r in results:
                    if isinstance(r.results[0], Exception):
                        raise r.results[0]
                imported += len(todo)
                bar.update(sum(sz for _, sz in batch))
                batch.clear()

            try:
                for msg in reader:
                    batch.append((Delivery(prepare(msg.raw), ((acct, f.name),), msg.flags, (), msg.internal_date),
                                  msg.size_in_file))
                    if len(batch) >= IMPORT_BATCH:
                        await flush()
                if batch:
                    await flush()
            finally:
                await self.audited("import", acct.address, folder=f.name, kind=kind, imported=imported,
                                   skipped=skipped)
        # Searchable when this returns (`postroom import` then exits): the bodies still waiting for
        # the search indexes (mailboxes/indexer.py) go in now, not at the server's next start.
        await store.catch_up_index(store.home(acct))
        return imported, skipped

    async def export_mbox(self, address: str, folder: str, out_path: str) -> int:
        acct = await self.mb.directory.account(address)
        f = await self.mb.store.folder(acct, folder)
        metas = await self.mb.store.messages(f.ref)
        out = Path(out_path)
        # Write to a temporary file and rename: nothing half-written is left behind.
        fd, tmp = tempfile.mkstemp(prefix=".postroom-export-", dir=out.parent if str(out.parent) else ".")
        try:
            with os.fdopen(fd, "wb") as fh, tqdm(total=len(metas), unit="msg", desc="export",
                                                  disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
                for i in range(0, len(metas), 200):
                    chunk = metas[i:i + 200]
                    raws = await self.mb.store.raw_many(f.ref.partition, [m.blob_id for m in chunk])
                    for m in chunk:
                        raw = raws[m.blob_id]
                        fh.write(mbox_entry(raw, envelope_sender(raw), m.internal_date))
                        bar.update(1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        await self.audited("export", acct.address, folder=folder, messages=len(metas), path=str(out))
        return len(metas)

    async def reindex(self, partitions: list[str]) -> int:
        """Rebuild the search indexes of every blob in the named partitions (mail stored before mai0004)."""
        total = 0
        for name in partitions:
            with tqdm(unit="msg", desc=f"reindex {name}", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
                total += await reindex_partition(self.mb.store, name, progress=bar.update)
        await self.audited("reindex", ",".join(partitions), blobs=total)
        return total

    async def archive(self, year: int) -> ArchiveReport:
        with tqdm(unit="msg", desc=f"archive {year}", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            rep = await archive_year(self.mb.store, year, progress=bar.update)
        await self.audited("archive", str(year), moved=rep.moved, folders=rep.folders)
        return rep
