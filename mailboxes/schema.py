"""SQLAlchemy Core tables: the directory (central database) and the mail tables (every partition)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

# Two metadata objects: the central database carries both, a department or
# archive partition carries only the mail tables.
directory_metadata = MetaData()
mail_metadata = MetaData()

ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite wants INTEGER for rowid aliases

# Ids that reach a client, a cache or another table are never handed out twice
# (design.md "Identity"): without AUTOINCREMENT SQLite gives a deleted row's id
# to the next insert, so a folder created later by another account took over
# state kept for the deleted one. PostgreSQL sequences never go back anyway.
NEVER_REUSED = {"sqlite_autoincrement": True}

# --- directory -------------------------------------------------------------

domains = Table(
    "domains",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)

departments = Table(
    "departments",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("parent_id", ID, ForeignKey("departments.id"), nullable=True),
    # bureau | department | district
    Column("kind", String(16), nullable=False, default="department"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("label", String(64), nullable=True),  # the default classification label of its mail (issue 13)
    # The leader who approves its held mail (issue 13); accounts.id without a foreign key: accounts
    # already refer to departments, and ids are never reused, so a removed leader matches nobody.
    Column("leader_id", ID, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=True),  # name last changed (vCard REV); NULL: never
    **NEVER_REUSED,
)

accounts = Table(
    "accounts",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("domain_id", ID, ForeignKey("domains.id"), nullable=False),
    Column("display_name", String(255), nullable=False, default=""),
    Column("department_id", ID, ForeignKey("departments.id"), nullable=True),
    Column("password_hash", String(255), nullable=True),
    # user | department_admin | admin
    Column("role", String(32), nullable=False, default="user"),
    Column("quota_bytes", BigInteger, nullable=False, default=0),  # 0: unlimited
    Column("quota_messages", BigInteger, nullable=False, default=0),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # what the address book shows (name, department, enabled) last changed (vCard REV); NULL: never
    Column("updated_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

app_passwords = Table(
    "app_passwords",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("label", String(128), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

aliases = Table(
    "aliases",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("target", String(320), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)

groups = Table(
    "groups",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("name", String(255), nullable=False, default=""),
    Column("department_id", ID, ForeignKey("departments.id"), nullable=True),
    # anyone | domain | members | posters
    Column("post_policy", String(16), nullable=False, default="domain"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)

group_members = Table(
    "group_members",
    directory_metadata,
    Column("group_id", ID, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("address", String(320), primary_key=True),
)

group_posters = Table(
    "group_posters",
    directory_metadata,
    Column("group_id", ID, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("address", String(320), primary_key=True),
)

routes = Table(
    "routes",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("domain", String(255), nullable=False, unique=True),  # "*" is the default route
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False, default=25),
    Column("tls", String(16), nullable=False, default="opportunistic"),  # required | opportunistic | none
    Column("auth_user", String(320), nullable=True),
    Column("auth_secret", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # smtp: host/port above; pull (issue 12): held in the local account auth_user for the district
    # to fetch (delivery.pullroute), auth_secret keys the envelope's MAC (host "", port 0).
    Column("kind", String(8), nullable=False, default="smtp", server_default="smtp"),
    **NEVER_REUSED,
)

dkim_keys = Table(
    "dkim_keys",
    directory_metadata,
    Column("domain", String(255), primary_key=True),
    Column("selector", String(63), primary_key=True),
    Column("private_pem", LargeBinary, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

dkim_trust = Table(
    "dkim_trust",
    directory_metadata,
    Column("domain", String(255), primary_key=True),
    Column("selector", String(63), primary_key=True),
    Column("public_txt", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    # The hash chain (mailboxes/auditlog.py): entry number, the previous entry's hash and this one's.
    Column("seq", BigInteger, nullable=False, index=True, unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    **NEVER_REUSED,
)

# Legal holds (mailboxes/holds.py): while an active hold covers a message, no deletion path
# removes it. Scope: an account, a department, or a saved search (criteria JSON, optionally
# narrowed to an account or a department). Released holds stay, for the record.
legal_holds = Table(
    "legal_holds",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # account | department | search
    # No foreign key: a released hold outlives the account it named (account ids are never reused).
    Column("account_id", ID, nullable=True),
    Column("department_code", String(64), nullable=True),
    Column("criteria", Text, nullable=False, default=""),  # JSON: from, subject, since, before, text
    Column("placed_by", String(320), nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("released_by", String(320), nullable=True),
    Column("released_at", DateTime(timezone=True), nullable=True, index=True),
    **NEVER_REUSED,
)

# Retention policies (mailboxes/retention.py): per folder kind and optionally per department.
retention_policies = Table(
    "retention_policies",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("folder_kind", String(16), nullable=False),  # inbox | sent | drafts | trash | junk | archive | other
    Column("department_code", String(64), nullable=False, default=""),  # "" = every department
    Column("days", Integer, nullable=False),
    Column("action", String(16), nullable=False),  # delete | archive
    UniqueConstraint("folder_kind", "department_code", name="uq_retention_kind_dept"),
    **NEVER_REUSED,
)

# One row per account a retention run has reached: a node claims an account by a
# compare-and-set on claimed_until, so with several nodes exactly one works on it at a time.
retention_claims = Table(
    "retention_claims",
    directory_metadata,
    Column("account_id", ID, primary_key=True, autoincrement=False),
    Column("node", String(64), nullable=False, default=""),
    Column("claimed_until", DateTime(timezone=True), nullable=False),
    Column("last_run_at", DateTime(timezone=True), nullable=True),
)

# Login attempts in flight and failed ones, shared by every process and node
# (mailboxes/attempts.py): the failed-login throttle reads them. Times are
# epoch seconds; rows older than the throttle window are pruned.
login_attempts = Table(
    "login_attempts",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("ip_key", String(64), nullable=False, index=True),
    Column("account_key", String(320), nullable=True, index=True),
    Column("at", Float, nullable=False, index=True),
    Column("failed", Boolean, nullable=False),  # false: in flight
)

# Webmail sign-ins (issue 10), in the central database so that every node sees them. Only the
# SHA-256 of the 256-bit session secret is stored: a copy of the table signs nobody in.
web_sessions = Table(
    "web_sessions",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("user_agent", String(255), nullable=False, default=""),
    **NEVER_REUSED,
)

# JSON API bearer tokens (issue 10): 256 random bits shown once; only their SHA-256 is kept. A
# fast hash is right here (unlike passwords): the secret is high-entropy, so nothing is gained
# by a slow one and every API request looks it up. kind "admin" is a person's token acting as
# its owner account; "source" is reserved for workflow systems. department_id NULL: whole server.
api_tokens = Table(
    "api_tokens",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    # kind "admin": a person's token (owner_id); kind "source": a workflow system's (source_id)
    Column("owner_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("department_id", ID, ForeignKey("departments.id", ondelete="CASCADE")),
    Column("source_id", ID, ForeignKey("event_sources.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("label", String(128), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    **NEVER_REUSED,
)

# Workflow systems that notify people by mail (issue 11): one row per source, its tokens in api_tokens.
event_sources = Table(
    "event_sources",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

# One row per accepted event, committed before the API answers 202; (source, its id) is unique,
# so a retried or concurrent post finds the first row. The worker claims pending rows with a lease.
events = Table(
    "events",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("source_id", ID, ForeignKey("event_sources.id", ondelete="CASCADE"), nullable=False),
    Column("ext_id", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("item", String(128), nullable=False),  # the workflow item: its events thread together
    Column("urgency", String(8), nullable=False),
    Column("locale", String(8), nullable=False),
    Column("payload", Text, nullable=False),  # JSON: title, body, data, link, recipients as posted
    Column("fingerprint", LargeBinary(32), nullable=False),  # SHA-256 of the posted event (a reuse of an id differs)
    Column("recipients", Text, nullable=False),  # JSON: the accounts' addresses it expanded to
    Column("unknown", Text, nullable=False),  # JSON: the recipients that named nobody
    # pending | delivering | sent | failed
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("queue_id", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("source_id", "ext_id", name="uq_events_source_ext"),
    Index("ix_events_due", "state", "next_attempt_at"),
    **NEVER_REUSED,
)

# Per person and event type: "immediate" (no row), "hourly" or "daily" digest.
event_preferences = Table(
    "event_preferences",
    directory_metadata,
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("type", String(64), primary_key=True),
    Column("mode", String(8), nullable=False),
)

# Events waiting for a person's digest: one row per (event, person), sent together per period.
event_digest_items = Table(
    "event_digest_items",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("event_id", ID, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("event_id", "account_id", name="uq_event_digest_items"),
    Index("ix_event_digest_due", "sent_at", "due_at"),
    **NEVER_REUSED,
)

# TOTP second factor (RFC 6238) for webmail sign-in: one secret per account, pending until the
# first code confirms it; `last_step` is the last time step accepted (no code is accepted twice).
totp_secrets = Table(
    "totp_secrets",
    directory_metadata,
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("secret", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("last_step", BigInteger),
)

# One-time recovery codes: only their SHA-256 is kept (they are 80 random bits each).
recovery_codes = Table(
    "recovery_codes",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("code_hash", LargeBinary(32), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    **NEVER_REUSED,
)

# A webmail sign-in whose password was right and which waits for the second factor.
second_factor_challenges = Table(
    "second_factor_challenges",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    **NEVER_REUSED,
)

# Per-account mail settings (issue 10 point 4): out-of-office auto-reply and signature, one row
# per account that has set any; rules in order; and who was auto-replied to when (RFC 3834 §2:
# at most once per sender per period), durable so that a restart does not reply again.
mail_settings = Table(
    "mail_settings",
    directory_metadata,
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("ooo_enabled", Boolean, nullable=False, default=False),
    Column("ooo_start", DateTime(timezone=True), nullable=True),
    Column("ooo_end", DateTime(timezone=True), nullable=True),
    Column("ooo_subject", String(255), nullable=False, default=""),
    Column("ooo_body", Text, nullable=False, default=""),
    Column("ooo_days", Integer, nullable=False, default=7),
    Column("signature", Text, nullable=False, default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

mail_rules = Table(
    "mail_rules",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("field", String(16), nullable=False),  # from | to | subject | list-id
    Column("value", String(255), nullable=False),
    Column("action", String(16), nullable=False),  # folder | flag | seen | stop
    Column("argument", String(255), nullable=False, default=""),
    **NEVER_REUSED,
)

autoreply_sent = Table(
    "autoreply_sent",
    directory_metadata,
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("sender", String(320), primary_key=True),
    Column("replied_at", DateTime(timezone=True), nullable=False),
)

# Read status inside the organisation (issue 10 point 5, mailboxes/readstatus.py): a message a local
# account submitted, and one row per colleague's copy delivered on this server. Central, so the
# sender's side finds them whichever partitions the recipients' mail lives in; the copies carry
# the row's id in messages.track_id, so a STORE that sets \Seen knows what to record.
sent_messages = Table(
    "sent_messages",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("sender_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(998), nullable=False),  # the Message-ID field, as the Sent copy has it
    Column("queue_id", String(32), nullable=False),
    Column("subject", String(255), nullable=False, default=""),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("recalled_at", DateTime(timezone=True), nullable=True),
    Index("ix_sent_messages_sender", "sender_id", "message_id"),
    # A queued copy's retry finds its read-status row by the message's queue id (readstatus.pending_copy).
    Index("ix_sent_messages_queue", "queue_id"),
    **NEVER_REUSED,
)

sent_copies = Table(
    "sent_copies",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("sent_id", ID, ForeignKey("sent_messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("first_read_at", DateTime(timezone=True), nullable=True),
    Column("recalled_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

# Which partitions hold an account's folders besides its home partition
# (year archives); the router consults it when listing folders.
mail_locations = Table(
    "mail_locations",
    directory_metadata,
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("partition", String(128), primary_key=True),
)

# The durable queue (design.md seam 4): one row per message, one per recipient.
queue_messages = Table(
    "queue_messages",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("queue_id", String(32), nullable=False, unique=True),
    Column("mail_from", String(320), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("submitter", String(320), nullable=True),
    Column("origin", String(32), nullable=False, default="smtp"),
    **NEVER_REUSED,
)

queue_recipients = Table(
    "queue_recipients",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("message_id", ID, ForeignKey("queue_messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("rcpt", String(320), nullable=False),
    Column("domain", String(255), nullable=False),
    # queued | held | delivering | sent | failed
    Column("state", String(16), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("warned", Boolean, nullable=False, default=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    # 0 特急, 1 加急, 2 routine (delivery.priority): claims take the smallest first.
    Column("priority", Integer, nullable=False, default=2, server_default="2"),
    # "host:port" of the link this row last failed to reach (delivery.links): released when it is back up.
    Column("link", String(300), nullable=True),
    Index("ix_queue_due", "state", "next_attempt_at"),
    Index("ix_queue_claim", "state", "priority", "next_attempt_at"),
    Index("ix_queue_link", "link"),
    **NEVER_REUSED,
)

# Outbound links (a route's or MX host, "host:port") that failed at the connection level: while one is
# down, mail for it waits and one node at a time probes it (delivery.links).
queue_links = Table(
    "queue_links",
    directory_metadata,
    Column("link", String(300), primary_key=True),
    Column("state", String(8), nullable=False),  # up | down
    Column("failures", Integer, nullable=False, default=0),  # probes failed since it went down
    Column("down_since", DateTime(timezone=True), nullable=True),
    Column("next_probe_at", DateTime(timezone=True), nullable=True),
    Column("probe_by", String(64), nullable=True),
    Column("probe_until", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

# Mail held for approval (issue 13): recipients its label does not allow wait here, never in the queue.
held_messages = Table(
    "held_messages",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("queue_id", String(32), nullable=False),
    Column("mail_from", String(320), nullable=False),
    Column("submitter", String(320), nullable=True),
    Column("label", String(64), nullable=False),
    Column("subject", String(300), nullable=False, default=""),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # pending | approved | rejected
    Column("state", String(16), nullable=False, default="pending"),
    Column("decided_by", String(320), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=True),
    # the leader asked to approve it when it was held (delivery/approvers.py); NULL: the office
    Column("approver", String(320), nullable=True),
    Index("ix_held_state", "state", "id"),
    Index("ix_held_approver", "approver", "state"),
    **NEVER_REUSED,
)

held_recipients = Table(
    "held_recipients",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("held_id", ID, ForeignKey("held_messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("rcpt", String(320), nullable=False),
    **NEVER_REUSED,
)

# --- official documents (issue 12) -----------------------------------------------
# Partner organisations whose signed document messages this site registers, and where its own go.
partners = Table(
    "partners",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("org", String(64), nullable=False, unique=True),  # the organisation code used in manifests
    Column("name", String(200), nullable=False, default=""),
    Column("domain", String(255), nullable=False, index=True),  # its DKIM signing domain
    Column("address", String(320), nullable=False),  # its document mailbox (documents are sent there)
    Column("created_at", DateTime(timezone=True), nullable=False),
    **NEVER_REUSED,
)

# Documents this site dispatched (发文): a document number once per issuing organ and year.
documents_out = Table(
    "documents_out",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("issuing_organ", String(100), nullable=False),
    Column("year", Integer, nullable=False),
    Column("number", String(64), nullable=False),  # 发文字号 as printed (深地税发〔2012〕12号)
    Column("title", String(200), nullable=False),
    Column("urgency", String(8), nullable=False, default=""),
    Column("manifest", Text, nullable=False),  # canonical JSON (bridges.manifest)
    Column("sender", String(320), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("issuing_organ", "year", "number"),
    **NEVER_REUSED,
)

# Tracking per dispatched document and recipient organisation; each time is set once, by its receipt.
document_recipients = Table(
    "document_recipients",
    directory_metadata,
    Column("document_id", ID, ForeignKey("documents_out.id", ondelete="CASCADE"), primary_key=True),
    Column("org", String(64), primary_key=True),
    Column("message_id", String(255), nullable=False, default=""),
    Column("queue_id", String(32), nullable=False, default="", index=True),  # its submission's, for the queue's outcome
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),  # accepted by the partner's server
    Column("failed_at", DateTime(timezone=True)),  # bounced by the queue (expired, refused)
    Column("failure", String(300), nullable=False, default=""),
    Column("delivered_at", DateTime(timezone=True)),
    Column("registered_at", DateTime(timezone=True)),
    Column("signed_at", DateTime(timezone=True)),
    Column("registration_number", String(100), nullable=False, default=""),
    Column("signed_by", String(100), nullable=False, default=""),
    Column("reminded_at", DateTime(timezone=True)),
)

# Documents received from partners and registered here (收文): each once, numbered per year.
documents_in = Table(
    "documents_in",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("partner_org", String(64), nullable=False),
    Column("issuing_organ", String(100), nullable=False),
    Column("number", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("urgency", String(8), nullable=False, default=""),
    Column("reg_year", Integer, nullable=False),
    Column("reg_seq", Integer, nullable=False),
    Column("registration_number", String(100), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("message_id", String(255), nullable=False, default=""),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("signed_at", DateTime(timezone=True)),
    Column("signed_by", String(100), nullable=False, default=""),
    UniqueConstraint("partner_org", "issuing_organ", "number"),
    UniqueConstraint("reg_year", "reg_seq"),
    **NEVER_REUSED,
)

# Document messages not registered (bad or missing signature, not a partner, bad manifest), for an administrator.
document_quarantine = Table(
    "document_quarantine",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("sender", String(320), nullable=False, default=""),
    Column("reason", String(300), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    **NEVER_REUSED,
)

# Webhooks out (issue 11 point 5): per source system a callback URL and its HMAC secret (kept as
# given: signing needs it, so it cannot be hashed), and the durable outbox of signed JSON callbacks.
# One holder at a time for a job that must run on one node only (mailboxes/leases.py).
leases = Table(
    "leases",
    directory_metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    directory_metadata,
    Column("source", String(64), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

webhook_outbox = Table(
    "webhook_outbox",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("delivery_id", String(40), nullable=False, unique=True),
    Column("source", String(64), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),  # the exact JSON bytes that are signed and sent
    # pending | sending (claimed, with a lease) | delivered | dead
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_webhook_outbox_due", "state", "next_attempt_at"),
    **NEVER_REUSED,
)

# --- mail (every partition) --------------------------------------------------

blobs = Table(
    "blobs",
    mail_metadata,
    Column("id", ID, primary_key=True),
    Column("sha256", LargeBinary(32), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=True),  # NULL when kept in the blob directory
    Column("parsed", Text, nullable=False),  # mime.ParsedMessage JSON: parse once
    Column("sent_at", DateTime(timezone=True), nullable=True),
    **NEVER_REUSED,
)

# A new body's text waiting for the search indexes (indexer.py): the delivery writes this row, not the
# index rows, and the indexer moves it into blob_fts/blob_search and blob_text when the store is idle.
blob_index_pending = Table(
    "blob_index_pending",
    mail_metadata,
    Column("blob_id", ID, ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True),
    # Characters of the four texts (a batch is sized by them); first, so a batch is chosen without reading text.
    Column("chars", Integer, nullable=False),
    Column("subject", Text, nullable=False),
    Column("addrs", Text, nullable=False),
    Column("head", Text, nullable=False),
    Column("body", Text, nullable=False),
)

folders = Table(
    "folders",
    mail_metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("name", String(1024), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False, default=1),
    Column("highestmodseq", BigInteger, nullable=False, default=1),
    Column("special_use", String(32), nullable=True),
    # RFC 3501 §2.3.2 \Recent: the highest UID some session has already been told is recent.
    # A read-write SELECT (or the EXISTS update of a selected folder) claims the UIDs above it
    # with one conditional UPDATE, so exactly one session, in any process or node, sees each.
    Column("recent_uid", BigInteger, nullable=False, default=0, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("account_id", "name", name="uq_folder_name"),
    **NEVER_REUSED,
)

# The names an account subscribed to (RFC 3501 §6.3.6), kept in its home partition. A list of
# names, not a flag on a folder: a name stays subscribed when its folder is deleted (a RENAME
# moves the renamed folders' names, mailboxes/subscriptions.py), may name a shared folder (Shared/<owner>/...) or an archive folder in another partition.
subscriptions = Table(
    "subscriptions",
    mail_metadata,
    Column("account_id", ID, primary_key=True),
    Column("name", String(1024), primary_key=True),
)

messages = Table(
    "messages",
    mail_metadata,
    Column("id", ID, primary_key=True),
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Column("flags", Integer, nullable=False, default=0),  # bit set of system flags
    Column("keywords", Text, nullable=False, default=""),  # space separated
    Column("internal_date", DateTime(timezone=True), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("blob_id", ID, ForeignKey("blobs.id"), nullable=False, index=True),
    # A colleague's copy whose reading is tracked: the sent_copies row id (central database), read
    # with the flags so that a STORE on untracked messages costs nothing more (readstatus.py).
    Column("track_id", BigInteger, nullable=True),
    UniqueConstraint("folder_id", "uid", name="uq_message_uid"),
    Index("ix_messages_modseq", "folder_id", "modseq"),
    # SELECT's read (mailboxes/listing.py: the state of every message of a folder by UID) from the
    # index alone on SQLite: 10,000 rows 7.5 -> 4.7 ms, about 1 us more per insert. Not on PostgreSQL:
    # a btree entry there is limited to about 2,700 bytes and a message's keywords may be longer.
    Index("ix_messages_state", "folder_id", "uid", "modseq", "flags", "keywords").ddl_if(dialect="sqlite"),
    # The webmail's list is by arrival date: a page is an index range, not a sort of the folder.
    Index("ix_messages_date", "folder_id", "internal_date", "uid"),
    # Recall finds every copy of a tracked message, in whatever folder it was moved to.
    Index("ix_messages_track", "track_id", sqlite_where=text("track_id IS NOT NULL"),
          postgresql_where=text("track_id IS NOT NULL")),
    **NEVER_REUSED,
)

expunged = Table(
    "expunged",
    mail_metadata,
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
    Column("uid", BigInteger, primary_key=True),
    Column("modseq", BigInteger, nullable=False),
    Index("ix_expunged_modseq", "folder_id", "modseq"),
)

# A folder's SELECT state saved at a MODSEQ (mailboxes.folderstate): a cold SELECT reads this row and
# what changed since instead of every message's. A cache: consistent at `modseq`, used only under the
# folder's `uidvalidity` at the time, rewritten when it falls behind.
folder_states = Table(
    "folder_states",
    mail_metadata,
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("uids", LargeBinary, nullable=False),  # little-endian int64s, ascending
    Column("modseqs", LargeBinary, nullable=False),  # little-endian int64s, in the UIDs' order
    Column("flags", LargeBinary, nullable=False),  # one byte a message: the system flag bits
    Column("keywords", Text, nullable=False),  # JSON {uid: "kw kw"} for the messages that carry any
)

folder_acl = Table(
    "folder_acl",
    mail_metadata,
    Column("folder_id", ID, ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
    Column("identifier", String(320), primary_key=True),
    Column("rights", String(32), nullable=False),
)

mailbox_usage = Table(
    "mailbox_usage",
    mail_metadata,
    Column("account_id", ID, primary_key=True),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("messages", BigInteger, nullable=False, default=0),
)

# Idempotency record of `postroom archive` moves, kept in the target (archive)
# partition: a move interrupted after the copy and rerun skips what is here.
archive_imports = Table(
    "archive_imports",
    mail_metadata,
    Column("source", String(128), primary_key=True),  # source partition name
    Column("source_message_id", ID, primary_key=True),
    Column("folder_id", ID, nullable=False),
    Column("uid", BigInteger, nullable=False),
)

# Counters that only go up, one row per name, kept in each partition.
# "uidvalidity": the last UIDVALIDITY handed out (mailboxes.identity).
mail_counters = Table(
    "mail_counters",
    mail_metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# A district's record of messages it fetched from its upstream's pull mailbox (issue 12 point 5,
# bridges.pull): written when the message is delivered here, before it is expunged there, so a
# message whose EXPUNGE never reached the upstream is not delivered twice. Keyed by the upstream
# mailbox's (UIDVALIDITY, UID) and, across a UIDVALIDITY change, by the digest of the sealed envelope.
pull_fetched = Table(
    "pull_fetched",
    directory_metadata,
    Column("id", ID, primary_key=True),
    Column("upstream", String(400), nullable=False),  # account@host:port
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256 hex of the sealed message (bridges.pull)
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("upstream", "uidvalidity", "uid", name="uq_pull_fetched_uid"),
    Index("ix_pull_fetched_digest", "upstream", "digest"),
    Index("ix_pull_fetched_at", "fetched_at"),
    **NEVER_REUSED,
)
