"""Opening the store from a StorageConfig: central schema, router, directory and mail store together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from argon2 import PasswordHasher

from .addressbook import AddressBook
from .blobs import BlobDirectory
from .changes import ChangeBus
from .directory import Directory
from .mailsettings import MailSettings
from .model import Account, Role
from .partitions import Router, StorageConfig, create_central_schema
from .provisioning import NewAccount, add_directory_rows
from .store import Store


@dataclass
class Mailboxes:
    router: Router
    directory: Directory
    store: Store
    settings: MailSettings = field(init=False)  # out-of-office, rules, signature (in the central database)
    addressbook: AddressBook = field(init=False)  # bounded reads of people, departments and groups

    def __post_init__(self) -> None:
        self.settings = MailSettings(self.router.central)
        self.addressbook = AddressBook(self.router.central)

    async def add_account(self, address: str, *, password: str | None, display_name: str = "",
                          department: str | None = None, role: Role = Role.USER,
                          quota_bytes: int = 0, quota_messages: int = 0) -> Account:
        """Create an account in the directory and its INBOX and special-use folders."""
        acct = await self.directory.add_account(address, password=password, display_name=display_name,
                                                department=department, role=role, quota_bytes=quota_bytes,
                                                quota_messages=quota_messages)
        await self.store.provision(acct)
        return acct

    async def add_accounts(self, specs: Sequence[NewAccount]) -> list[Account]:
        """add_account() for many (an import): all or none, in a few transactions (mailboxes.provisioning)."""
        accounts = await add_directory_rows(self.directory, specs)
        await self.store.provision_many(accounts)
        return accounts

    async def close(self) -> None:
        await self.directory.audit_buffer.flush()
        await self.store.close()
        self.directory.passwords.close()


async def open_mailboxes(config: StorageConfig, *, bus: ChangeBus | None = None,
                         hasher: PasswordHasher | None = None, hash_slots: int | None = None,
                         migrate: bool = True) -> Mailboxes:
    """`hasher` sets the Argon2 cost; `hash_slots` how many hashes may run at once (default: one per core).

    `migrate=False`: the central schema is known to be current (a supervisor migrated it before
    starting its workers), so it is not checked again in every process.
    """
    router = Router(config)
    if migrate:
        await create_central_schema(router.central)
    await router.central.warm()  # the first client does not pay for the engines' set-up
    d = Directory(router.central, hasher=hasher, hash_slots=hash_slots)
    blob_dir = BlobDirectory(config.blob_dir) if config.blob_dir else None
    store = Store(router, d, bus=bus, blob_dir=blob_dir)
    return Mailboxes(router, d, store)
