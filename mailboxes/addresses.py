"""Address and domain validation for the directory (email-validator, tuned for closed office networks).

Office networks use names that never reach the public DNS: `.internal`,
`.local` (Active Directory habit), `.test` in labs, and single-label hosts.
email-validator refuses special-use names by default; we accept them, since
an administrator who adds a domain means it. Its documented list of refused
names is trimmed here, once, for `local`.
"""

from __future__ import annotations

import email_validator
from email_validator import EmailNotValidError, validate_email

from .errors import InvalidInput

if "local" in email_validator.SPECIAL_USE_DOMAIN_NAMES:
    email_validator.SPECIAL_USE_DOMAIN_NAMES.remove("local")

_OPTS = dict(check_deliverability=False, allow_smtputf8=True, globally_deliverable=False, test_environment=True)


def normalise_address(address: str) -> str:
    """Validate an address (internationalised local parts allowed) and normalise it.

    Domains become lowercase ASCII (IDNA); local parts are compared
    case-insensitively, as users expect.
    """
    try:
        v = validate_email(address.strip(), **_OPTS)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid address {address!r}: {exc}") from None
    return f"{v.local_part.lower()}@{v.ascii_domain.lower()}"


def normalise_domain(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        v = validate_email(f"postmaster@{name}", **_OPTS)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid domain {name!r}: {exc}") from None
    return v.ascii_domain.lower()
