"""The directory in the central database: domains, departments, accounts, app passwords, aliases, groups, audit."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from sqlalchemy import and_, delete, func, insert, null, select, update

from . import auditlog
from . import schema as t
from .addresses import normalise_address, normalise_domain
from .db import Database
from .errors import AlreadyExists, InvalidInput, NotFound
from .leaders import department, departments_with_leaders
from .model import Account, Credential, Department, Domain, Group, Role, Verified
from .passwords import (PasswordHashing, format_app_password, is_legacy_app_password, new_app_secret,
                        parse_app_password)

POST_POLICIES = ("anyone", "domain", "members", "posters")
DEPARTMENT_KINDS = ("bureau", "department", "district")
MAX_GROUP_DEPTH = 8  # nested groups are expanded this deep at most


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Resolution:
    """Where mail for an address goes: local accounts (ids) and remote addresses."""

    local: tuple[Account, ...]
    remote: tuple[str, ...]


class Directory:
    def __init__(self, db: Database, *, hasher: PasswordHasher | None = None, hash_slots: int | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.passwords = PasswordHashing(hasher, slots=hash_slots)
        self.clock = clock
        self.audit_buffer = auditlog.BufferedAudit(db, lambda: self.clock())

    # --- passwords and logins --------------------------------------------------

    async def hash_password(self, password: str) -> str:
        if not password:
            raise InvalidInput("empty password")
        return await self.passwords.hash(password)

    async def authenticate(self, address: str, password: str) -> Account | None:
        """The enabled account if `password` is its password or one of its app passwords."""
        verified = await self.check_password(address, password)
        return verified.account if verified else None

    def _login_select(self, app_id: int | None):
        """Account, its password hash and (for `app_id`) that app password's hash: one read per login."""
        joined = t.accounts.outerjoin(t.departments, t.accounts.c.department_id == t.departments.c.id)
        app_hash = null()
        if app_id is not None:
            joined = joined.outerjoin(t.app_passwords, and_(t.app_passwords.c.id == app_id,
                                                            t.app_passwords.c.account_id == t.accounts.c.id))
            app_hash = t.app_passwords.c.password_hash
        return select(*self._account_cols, t.accounts.c.password_hash.label("main_hash"),
                      app_hash.label("app_hash")).select_from(joined)

    async def check_password(self, address: str, password: str) -> Verified | None:
        """The account and the credential that `password` matched, or None; one Argon2 verification per call.

        Unknown, malformed and disabled accounts verify a dummy hash (passwords.py), so
        the time taken does not tell whether an account exists. A password of the shape
        `<id>-<secret>` whose id names one of the account's app passwords is checked
        against that app password only. Only app passwords issued before they carried
        their id may cost one more verification each (legacy, 20 hex characters).
        """
        try:
            address = normalise_address(address)
        except InvalidInput:
            address = ""
        app = parse_app_password(password)
        row = None
        if address:
            async with self.db.read() as conn:
                row = (await conn.execute(self._login_select(app[0] if app else None)
                                          .where(t.accounts.c.address == address))).first()
        if row is None or not row.enabled:
            await self.passwords.verify_dummy(password)
            return None
        if app is not None and row.app_hash is not None:
            if not await self.passwords.verify(row.app_hash, app[1]):
                return None
            return await self._app_login(row, app[0], row.app_hash, app[1])
        if row.main_hash is None:
            await self.passwords.verify_dummy(password)
        elif await self.passwords.verify(row.main_hash, password):
            hash_ = await self._rehash(t.accounts, row.id, row.main_hash, password)
            return Verified(self._account(row), Credential(row.id, row.address, None, hash_))
        if is_legacy_app_password(password):
            async with self.db.read() as conn:
                apps = (await conn.execute(select(t.app_passwords.c.id, t.app_passwords.c.password_hash)
                                           .where(t.app_passwords.c.account_id == row.id))).all()
            for a in apps:
                if await self.passwords.verify(a.password_hash, password):
                    return await self._app_login(row, a.id, a.password_hash, password)
        return None

    async def _app_login(self, row, app_id: int, hash_: str, secret: str) -> Verified:
        hash_ = await self._rehash(t.app_passwords, app_id, hash_, secret, last_used_at=self.clock())
        return Verified(self._account(row), Credential(row.id, row.address, app_id, hash_))

    async def _rehash(self, table, row_id: int, hash_: str, secret: str, **values) -> str:
        """The stored hash after this login: re-made when the configured Argon2 cost changed.

        Compare-and-set, so a password changed meanwhile is never overwritten.
        """
        new = await self.passwords.hash(secret) if self.passwords.needs_rehash(hash_) else hash_
        if new != hash_:
            values["password_hash"] = new
        if not values:
            return hash_
        async with self.db.write() as conn:
            res = await conn.execute(update(table).where(and_(table.c.id == row_id, table.c.password_hash == hash_))
                                     .values(**values))
        return new if res.rowcount else hash_

    async def credential_account(self, cred: Credential) -> Account | None:
        """The account if `cred` still holds: one read, no hashing (a changed hash means a changed secret)."""
        async with self.db.read() as conn:
            row = (await conn.execute(self._login_select(cred.app_id)
                                      .where(t.accounts.c.id == cred.account_id))).first()
        if row is None or not row.enabled or row.address != cred.address:
            return None
        current = row.main_hash if cred.app_id is None else row.app_hash
        return self._account(row) if current == cred.hash else None

    # --- domains ---------------------------------------------------------------

    async def add_domain(self, name: str) -> Domain:
        name = normalise_domain(name)
        now = self.clock()

        def add(conn, _blocking) -> Domain:  # one write transaction, one hand-off on SQLite
            if conn.execute(select(t.domains.c.id).where(t.domains.c.name == name)).first():
                raise AlreadyExists(f"domain {name} already exists")
            return Domain(conn.execute(insert(t.domains).values(name=name, created_at=now)).inserted_primary_key[0], name)
        return await self.db.write_sync(add)

    async def list_domains(self) -> list[Domain]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.domains.c.id, t.domains.c.name).order_by(t.domains.c.name))).all()
        return [Domain(r.id, r.name) for r in rows]

    async def remove_domain(self, name: str) -> None:
        name = normalise_domain(name)
        async with self.db.write() as conn:
            row = (await conn.execute(select(t.domains.c.id).where(t.domains.c.name == name))).first()
            if row is None:
                raise NotFound(f"no domain {name}")
            n = (await conn.execute(select(func.count()).select_from(t.accounts)
                                    .where(t.accounts.c.domain_id == row.id))).scalar_one()
            if n:
                raise InvalidInput(f"domain {name} still has {n} accounts; remove them first")
            await conn.execute(delete(t.domains).where(t.domains.c.id == row.id))

    async def local_domains(self) -> set[str]:
        return {d.name for d in await self.list_domains()}

    # --- departments -------------------------------------------------------------

    async def add_department(self, code: str, name: str, *, parent: str | None = None,
                             kind: str = "department") -> Department:
        code = code.strip().lower()
        if not code or not code.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(f"invalid department code {code!r} (letters, digits, - and _)")
        if kind not in DEPARTMENT_KINDS:
            raise InvalidInput(f"department kind must be one of {', '.join(DEPARTMENT_KINDS)}")
        async with self.db.write() as conn:
            if (await conn.execute(select(t.departments.c.id).where(t.departments.c.code == code))).first():
                raise AlreadyExists(f"department {code} already exists")
            parent_id = None
            if parent:
                prow = (await conn.execute(select(t.departments.c.id)
                                           .where(t.departments.c.code == parent.lower()))).first()
                if prow is None:
                    raise NotFound(f"no parent department {parent}")
                parent_id = prow.id
            res = await conn.execute(insert(t.departments).values(
                code=code, name=name, parent_id=parent_id, kind=kind, created_at=self.clock()))
            return Department(res.inserted_primary_key[0], code, name, parent_id, kind)

    async def list_departments(self) -> list[Department]:
        async with self.db.read() as conn:
            rows = (await conn.execute(departments_with_leaders().order_by(t.departments.c.code))).all()
        return [department(r) for r in rows]

    # --- accounts ----------------------------------------------------------------

    _account_cols = (t.accounts.c.id, t.accounts.c.address, t.accounts.c.display_name,
                     t.accounts.c.department_id, t.departments.c.code.label("department_code"),
                     t.accounts.c.role, t.accounts.c.quota_bytes, t.accounts.c.quota_messages,
                     t.accounts.c.enabled)

    def _account_select(self):
        return select(*self._account_cols).select_from(
            t.accounts.outerjoin(t.departments, t.accounts.c.department_id == t.departments.c.id))

    @staticmethod
    def _account(r) -> Account:
        return Account(r.id, r.address, r.display_name, r.department_id, r.department_code,
                       Role(r.role), r.quota_bytes, r.quota_messages, r.enabled)

    async def add_account(self, address: str, *, password: str | None, display_name: str = "",
                          department: str | None = None, role: Role = Role.USER,
                          quota_bytes: int = 0, quota_messages: int = 0) -> Account:
        """The account's directory row (Mailboxes.add_account also makes its folders)."""
        from .provisioning import NewAccount, add_directory_rows

        [account] = await add_directory_rows(self, [NewAccount(address, password, display_name, department, role,
                                                               quota_bytes, quota_messages)])
        return account

    @staticmethod
    async def _department_id(conn, code: str | None) -> int | None:
        if not code:
            return None
        row = (await conn.execute(select(t.departments.c.id).where(t.departments.c.code == code.lower()))).first()
        if row is None:
            raise NotFound(f"no department {code}")
        return row.id

    async def _check_free(self, conn, address: str) -> None:
        for table, what in ((t.accounts, "an account"), (t.aliases, "an alias"), (t.groups, "a group")):
            if (await conn.execute(select(table.c.id).where(table.c.address == address))).first():
                raise AlreadyExists(f"{address} is already {what}")

    async def account_by_id(self, account_id: int) -> Account:
        async with self.db.read() as conn:
            r = (await conn.execute(self._account_select().where(t.accounts.c.id == account_id))).first()
        if r is None:
            raise NotFound(f"no account with id {account_id}")
        return self._account(r)

    async def account(self, address: str) -> Account:
        address = normalise_address(address)
        async with self.db.read() as conn:
            r = (await conn.execute(self._account_select().where(t.accounts.c.address == address))).first()
        if r is None:
            raise NotFound(f"no account {address}")
        return self._account(r)

    async def list_accounts(self, *, domain: str | None = None,
                            department: str | None = None) -> list[Account]:
        q = self._account_select().order_by(t.accounts.c.address)
        if domain:
            q = q.where(t.accounts.c.address.like(f"%@{normalise_domain(domain)}"))
        if department:
            q = q.where(t.departments.c.code == department.lower())
        async with self.db.read() as conn:
            return [self._account(r) for r in (await conn.execute(q)).all()]

    async def set_password(self, address: str, password: str) -> None:
        acct = await self.account(address)
        hash_ = await self.hash_password(password)
        async with self.db.write() as conn:
            await conn.execute(update(t.accounts).where(t.accounts.c.id == acct.id).values(password_hash=hash_))

    async def set_enabled(self, address: str, enabled: bool) -> None:
        acct = await self.account(address)
        async with self.db.write() as conn:
            await conn.execute(update(t.accounts).where(t.accounts.c.id == acct.id)
                               .values(enabled=enabled, updated_at=self.clock()))  # the vCard's REV

    async def set_quota(self, address: str, *, quota_bytes: int, quota_messages: int) -> None:
        acct = await self.account(address)
        async with self.db.write() as conn:
            await conn.execute(update(t.accounts).where(t.accounts.c.id == acct.id)
                               .values(quota_bytes=quota_bytes, quota_messages=quota_messages))

    async def remove_account(self, address: str) -> Account:
        acct = await self.account(address)
        async with self.db.write() as conn:
            await conn.execute(delete(t.app_passwords).where(t.app_passwords.c.account_id == acct.id))
            await conn.execute(delete(t.mail_locations).where(t.mail_locations.c.account_id == acct.id))
            await conn.execute(delete(t.group_members).where(t.group_members.c.address == acct.address))
            await conn.execute(delete(t.group_posters).where(t.group_posters.c.address == acct.address))
            await conn.execute(update(t.departments).where(t.departments.c.leader_id == acct.id)
                               .values(leader_id=None))  # no longer anyone's leader (issue 13)
            await conn.execute(delete(t.accounts).where(t.accounts.c.id == acct.id))
        return acct

    # --- app passwords -----------------------------------------------------------

    async def add_app_password(self, address: str, label: str) -> str:
        """Create an app password and return it as `<id>-<secret>` (shown once; only the secret's hash is kept)."""
        acct = await self.account(address)
        secret = new_app_secret()
        hash_ = await self.hash_password(secret)
        async with self.db.write() as conn:
            res = await conn.execute(insert(t.app_passwords).values(
                account_id=acct.id, label=label, password_hash=hash_, created_at=self.clock()))
        return format_app_password(res.inserted_primary_key[0], secret)

    async def list_app_passwords(self, address: str) -> list[tuple[int, str, datetime | None]]:
        acct = await self.account(address)
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.app_passwords.c.id, t.app_passwords.c.label,
                                              t.app_passwords.c.last_used_at)
                                       .where(t.app_passwords.c.account_id == acct.id))).all()
        return [(r.id, r.label, r.last_used_at) for r in rows]

    async def revoke_app_password(self, address: str, app_id: int) -> None:
        acct = await self.account(address)
        async with self.db.write() as conn:
            res = await conn.execute(delete(t.app_passwords).where(and_(
                t.app_passwords.c.id == app_id, t.app_passwords.c.account_id == acct.id)))
            if res.rowcount == 0:
                raise NotFound(f"no app password {app_id} for {address}")

    # --- aliases and groups ------------------------------------------------------

    async def add_alias(self, address: str, target: str) -> None:
        address, target = normalise_address(address), normalise_address(target)
        if address == target:
            raise InvalidInput("an alias cannot point to itself")
        async with self.db.write() as conn:
            await self._check_local_domain(conn, address)
            await self._check_free(conn, address)
            await conn.execute(insert(t.aliases).values(address=address, target=target,
                                                        created_at=self.clock()))

    async def list_aliases(self) -> list[tuple[str, str]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(t.aliases.c.address, t.aliases.c.target)
                                       .order_by(t.aliases.c.address))).all()
        return [(r.address, r.target) for r in rows]

    async def remove_alias(self, address: str) -> None:
        address = normalise_address(address)
        async with self.db.write() as conn:
            if (await conn.execute(delete(t.aliases).where(t.aliases.c.address == address))).rowcount == 0:
                raise NotFound(f"no alias {address}")

    async def _check_local_domain(self, conn, address: str) -> None:
        domain = address.rsplit("@", 1)[1]
        if not (await conn.execute(select(t.domains.c.id).where(t.domains.c.name == domain))).first():
            raise NotFound(f"domain {domain} is not a local domain")

    async def add_group(self, address: str, name: str = "", *, post_policy: str = "domain",
                        department: str | None = None) -> Group:
        address = normalise_address(address)
        if post_policy not in POST_POLICIES:
            raise InvalidInput(f"post policy must be one of {', '.join(POST_POLICIES)}")
        async with self.db.write() as conn:
            await self._check_local_domain(conn, address)
            await self._check_free(conn, address)
            dept_id = await self._department_id(conn, department)
            res = await conn.execute(insert(t.groups).values(
                address=address, name=name, post_policy=post_policy, department_id=dept_id,
                created_at=self.clock()))
            return Group(res.inserted_primary_key[0], address, name, post_policy)

    async def _group_row(self, conn, address: str):
        row = (await conn.execute(select(t.groups).where(t.groups.c.address == address))).first()
        if row is None:
            raise NotFound(f"no group {address}")
        return row

    async def set_group_members(self, address: str, *, add: list[str] = (), remove: list[str] = (),
                                posters: bool = False) -> Group:
        """Add or remove members (or, with posters=True, allowed posters) of a group."""
        address = normalise_address(address)
        table = t.group_posters if posters else t.group_members
        add = [normalise_address(a) for a in add]
        remove = [normalise_address(a) for a in remove]
        async with self.db.write() as conn:
            g = await self._group_row(conn, address)
            existing = {r.address for r in (await conn.execute(
                select(table.c.address).where(table.c.group_id == g.id))).all()}
            new = [a for a in dict.fromkeys(add) if a not in existing and a != address]
            if new:
                await conn.execute(insert(table), [{"group_id": g.id, "address": a} for a in new])
            if remove:
                await conn.execute(delete(table).where(and_(table.c.group_id == g.id,
                                                            table.c.address.in_(remove))))
        return await self.group(address)

    async def group(self, address: str) -> Group:
        address = normalise_address(address)
        async with self.db.read() as conn:
            g = await self._group_row(conn, address)
            members = (await conn.execute(select(t.group_members.c.address)
                                          .where(t.group_members.c.group_id == g.id)
                                          .order_by(t.group_members.c.address))).scalars().all()
            posters = (await conn.execute(select(t.group_posters.c.address)
                                          .where(t.group_posters.c.group_id == g.id)
                                          .order_by(t.group_posters.c.address))).scalars().all()
        return Group(g.id, g.address, g.name, g.post_policy, tuple(members), tuple(posters))

    async def list_groups(self) -> list[Group]:
        async with self.db.read() as conn:
            addrs = (await conn.execute(select(t.groups.c.address).order_by(t.groups.c.address))).scalars().all()
        return [await self.group(a) for a in addrs]

    # --- resolution ----------------------------------------------------------------

    async def resolve(self, address: str) -> Resolution | None:
        """Expand an address through aliases and groups (nested, duplicates removed).

        None when the address is in a local domain but names nobody (550 5.1.1).
        Addresses outside local domains come back as remote.
        """
        address = normalise_address(address)
        local: dict[int, Account] = {}
        remote: dict[str, None] = {}
        async with self.db.read() as conn:
            domains = set((await conn.execute(select(t.domains.c.name))).scalars().all())
            found = await self._expand(conn, address, domains, local, remote, 0, set())
        if not found:
            return None
        return Resolution(tuple(local.values()), tuple(remote))

    async def _expand(self, conn, address, domains, local, remote, depth, seen) -> bool:
        if address in seen or depth > MAX_GROUP_DEPTH:
            return True
        seen.add(address)
        if address.rsplit("@", 1)[1] not in domains:
            remote[address] = None
            return True
        r = (await conn.execute(self._account_select().where(t.accounts.c.address == address))).first()
        if r is not None:
            if r.enabled:
                local[r.id] = self._account(r)
            return r.enabled
        target = (await conn.execute(select(t.aliases.c.target).where(t.aliases.c.address == address))).scalar()
        if target is not None:
            return await self._expand(conn, target, domains, local, remote, depth + 1, seen)
        gid = (await conn.execute(select(t.groups.c.id).where(t.groups.c.address == address))).scalar()
        if gid is not None:
            members = (await conn.execute(select(t.group_members.c.address)
                                          .where(t.group_members.c.group_id == gid))).scalars().all()
            for m in members:
                await self._expand(conn, m, domains, local, remote, depth + 1, seen)
            return True
        return False

    async def may_post(self, group_address: str, sender: str | None) -> bool:
        """Whether `sender` (an address, None for an unauthenticated outsider) may post to the group."""
        g = await self.group(group_address)
        if g.post_policy == "anyone":
            return True
        if sender is None:
            return False
        sender = normalise_address(sender)
        if g.post_policy == "domain":
            return sender.rsplit("@", 1)[1] in await self.local_domains()
        if g.post_policy == "members":
            return sender in g.members or sender in g.posters
        return sender in g.posters

    async def sender_addresses(self, account: Account) -> set[str]:
        """Addresses `account` may use as sender: its own, aliases pointing to it, groups it may post as."""
        out = {account.address}
        async with self.db.read() as conn:
            out.update((await conn.execute(select(t.aliases.c.address)
                                           .where(t.aliases.c.target == account.address))).scalars().all())
            out.update((await conn.execute(
                select(t.groups.c.address).join(t.group_posters, t.group_posters.c.group_id == t.groups.c.id)
                .where(t.group_posters.c.address == account.address))).scalars().all())
        return out

    # --- audit -----------------------------------------------------------------------

    async def audit(self, actor: str, action: str, target: str = "", **detail) -> None:
        """Append one entry to the hash-chained audit log (mailboxes/auditlog.py) in its own transaction."""
        async with self.db.write() as conn:
            await auditlog.append(conn, at=self.clock(), actor=actor, action=action, target=target,
                                  detail=json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True))

    async def audit_soon(self, actor: str, action: str, target: str = "", **detail) -> None:
        """Record an entry from a hot path (login, send, shared read): buffered and appended in batches."""
        await self.audit_buffer.record(actor, action, target, detail)

    async def audit_entries(self, limit: int = 100, *, activity: bool = False) -> list[dict]:
        """The newest entries; `activity=False` leaves out logins, sends and shared reads (admin actions only)."""
        q = select(t.audit_log).order_by(t.audit_log.c.seq.desc()).limit(limit)
        if not activity:
            q = q.where(t.audit_log.c.action.notin_(auditlog.ACTIVITY)).where(~t.audit_log.c.action.like("login.%"))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [dict(r._mapping) for r in rows]
