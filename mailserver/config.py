"""Typed configuration: one TOML file, loaded once, checked in full, passed down (never a global).

Every key, its default and its meaning is listed in KEYS below; `docs/config.md`
is generated from it and a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delivery.labels import DEFAULT_LABELS, Labels, check_labels
from mailboxes.partitions import MODES, StorageConfig

ENV_VAR = "POSTROOM_CONFIG"
DEFAULT_PATH = "postroom.toml"


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    default: Any
    doc: str


# (contract) The documented keys. Types are those of the defaults.
KEYS: tuple[Key, ...] = (
    Key("server", "hostname", "localhost", "Host name used in SMTP greetings, Received headers and DSNs."),
    Key("server", "data_dir", "var", "Directory for the embedded database, blobs, TLS files and logs."),
    Key("server", "log_level", "info", "Logging level: debug, info, warning, error."),
    Key("server", "audit_anchor", "",
        "File the audit log's anchors (sequence number, hash, time) are appended to, outside the database, so "
        "that `postroom audit verify` detects a truncated end; empty: <data_dir>/audit-anchors.txt. Written "
        "every `audit_anchor_every` seconds by `postroom serve` and by `postroom audit anchor`."),
    Key("server", "audit_anchor_every", 300, "Seconds between audit anchors written by the server; 0: none."),
    Key("server", "workers", 0,
        "Worker processes `postroom serve` runs (`--workers N` overrides). 0: automatic, one per CPU core, "
        "at most 2 when the store is SQLite (one writer at a time: the workers take turns on its lock; two "
        "delivered more than one, four on two cores less than two). They take turns on every listener's one "
        "socket (a new connection goes to the worker holding fewer) and share the store; "
        "1 serves in one process. The connection limits and the queue's `workers` apply per process."),
    Key("server", "worker_restart_ms", 1000,
        "Milliseconds `postroom serve --workers` waits before restarting a worker that exited; doubled after "
        "each exit within 10 s of its start (at most 30 s), and the fourth such exit in a row stops the server."),
    Key("listen", "smtp", "127.0.0.1:2525", "Server-to-server SMTP (port 25 role). Empty disables."),
    Key("listen", "submission", "127.0.0.1:2587", "SMTP submission with STARTTLS and AUTH (port 587 role)."),
    Key("listen", "submissions", "127.0.0.1:2465", "SMTP submission over implicit TLS (port 465 role)."),
    Key("listen", "imap", "127.0.0.1:2143", "IMAP with STARTTLS (port 143 role)."),
    Key("listen", "imaps", "127.0.0.1:2993", "IMAP over implicit TLS (port 993 role)."),
    Key("listen", "http", "127.0.0.1:8025", "Webmail, admin console and JSON API."),
    Key("listen", "proxy_trusted", [],
        "Networks of TCP load balancers (e.g. [\"10.0.0.0/24\"]) whose connections to the SMTP and IMAP listeners "
        "must start with a PROXY protocol v1 or v2 header naming the client; logs, login throttles, "
        "per-address caps and Received headers then use the client's address. A connection from these "
        "networks without a valid header within 5 s is dropped (and logged); from anywhere else a PROXY "
        "header is a protocol error. Empty: no PROXY protocol."),
    Key("listen", "http_forwarded_trusted", [],
        "Networks of HTTP reverse proxies in front of the webmail (e.g. [\"10.0.0.0/24\"]): from them the last "
        "element of the Forwarded header (RFC 7239: for=, proto=) names the client's address and scheme, which "
        "sign-in throttles, cookie flags and CardDAV's HTTPS requirement then use. From anywhere else the "
        "header is ignored. Empty: no proxy is trusted."),
    Key("listen", "https", "",
        "Webmail over TLS with the server's certificate ([tls] cert); cookies are then Secure and __Host- prefixed."),
    # --- [clients]: what client set-up (autoconfig, Autodiscover, .mobileconfig, the set-up page) tells clients ---
    Key("clients", "hostname", "",
        "Host name mail clients connect to (the name on the certificate, behind NAT or a load balancer the public "
        "one); empty: [server] hostname."),
    Key("clients", "imaps_port", 0, "Port clients use for IMAP over TLS; 0: the port [listen] imaps is bound to."),
    Key("clients", "imap_port", 0, "Port clients use for IMAP with STARTTLS; 0: the port [listen] imap is bound to."),
    Key("clients", "submissions_port", 0,
        "Port clients use for submission over TLS; 0: the port [listen] submissions is bound to."),
    Key("clients", "submission_port", 0,
        "Port clients use for submission with STARTTLS; 0: the port [listen] submission is bound to."),
    Key("tls", "cert", "", "PEM certificate chain; empty: <data_dir>/tls/cert.pem made by `postroom init`."),
    Key("tls", "key", "", "PEM private key; empty: <data_dir>/tls/key.pem."),
    Key("tls", "allow_plaintext_auth_on_loopback", False,
        "Allow AUTH/LOGIN without TLS for clients connecting from loopback (testing, local tools)."),
    Key("storage", "url", "", "SQLAlchemy URL of the central database; empty: SQLite in <data_dir>/postroom.db."),
    Key("storage", "mode", "shared", "Partitioning: shared, department, year or hybrid."),
    Key("storage", "departments", [], "Department codes that get a database of their own (department/hybrid)."),
    Key("storage", "partition_url", "",
        "URL template for partition databases with {name} (e.g. dept-finance, archive-2025); empty: derived."),
    Key("storage", "blob_dir", "", "Keep message bodies as files in this directory; empty: in the database."),
    Key("limits", "max_message_size", 52428800, "Largest message accepted, in bytes (SMTP SIZE, APPEND)."),
    Key("limits", "max_recipients", 1000, "Recipients per SMTP transaction."),
    Key("limits", "default_quota_bytes", 2147483648, "Quota of new accounts in bytes (0: unlimited)."),
    Key("limits", "default_quota_messages", 0, "Message-count quota of new accounts (0: unlimited)."),
    Key("limits", "auth_failures", 5, "Failed logins per client address or account before throttling."),
    Key("limits", "auth_window", 300, "Seconds over which failed logins are counted."),
    Key("limits", "smtp_connections", 1000,
        "Concurrent SMTP connections on all listeners together; more are answered 421 4.7.0 and closed."),
    Key("limits", "smtp_connections_per_address", 100,
        "Concurrent SMTP connections from one client IP address; more are answered 421 4.7.0 and closed."),
    Key("limits", "smtp_data_timeout", 300,
        "Seconds from the DATA command to the final dot (RFC 5321 §4.5.3.2); then 421 4.4.2 and close."),
    Key("limits", "imap_connections_per_account", 50, "Concurrent IMAP connections one account may hold."),
    Key("limits", "imap_idle_timeout", 1800, "Seconds of inactivity (IDLE included) before an IMAP client is logged out."),
    # --- IMAP connection caps and pre-login deadlines (issue 7, points 5 and 6) ---------------
    Key("limits", "imap_connections", 5000,
        "IMAP connections in total; a client beyond it is greeted with BYE [UNAVAILABLE] and disconnected."),
    Key("limits", "imap_connections_per_address", 1000,
        "IMAP connections from one client address (an IPv6 /64 counts as one); generous for offices behind NAT."),
    Key("limits", "imap_connections_before_login", 1000,
        "IMAP connections that have not logged in yet, in total (slow or idle clients cannot crowd the server)."),
    Key("limits", "imap_login_timeout", 60,
        "Seconds from connecting (STARTTLS included) within which an IMAP client must log in; then BYE."),
    Key("limits", "imap_preauth_idle_timeout", 30, "Seconds an IMAP client may stay silent before logging in."),
    # --- end of IMAP connection caps ----------------------------------------------------------
    Key("queue", "retry_delays", [60, 300, 900, 3600, 7200],
        "Seconds between delivery attempts; the last repeats until expiry."),
    Key("queue", "expire_after", 432000, "Seconds after which undeliverable mail bounces (default 5 days)."),
    Key("queue", "warn_after", 14400, "Seconds after which the sender is told of a delay (default 4 hours)."),
    Key("queue", "workers", 4,
        "Concurrent outbound deliveries per node: local retries, and links served at once (each over up to 8 "
        "connections that send messages in turn, pipelined)."),
    Key("queue", "probe_delays", [5, 10, 30, 60],
        "Seconds between probes of a link that went down (a connection to its host failed); the last repeats. "
        "While it is down its mail waits, without a connection per message; when a probe answers, all of it "
        "goes at once, urgent first."),
    Key("queue", "lease", 30,
        "Seconds a node's claim on a queued delivery lasts unless renewed (every third of it while the attempt "
        "runs); a node that dies mid-delivery loses its claims after this, and another node sharing the "
        "database delivers them."),
    Key("queue", "mx_lookup", True,
        "Look up MX records in DNS for domains without a route; false on closed networks (then every remote "
        "domain needs a route, or a default route \"*\")."),
    Key("dkim", "selector", "postroom", "Selector used by `postroom dkim generate` when none is given."),
    Key("dkim", "dns_lookup", True,
        "Fetch other domains' DKIM keys from DNS when they are not trusted locally (`postroom dkim trust`)."),
    # --- [documents]: official document exchange with partner organisations (issue 12) ---------------
    Key("labels", "list", [dict(d) for d in DEFAULT_LABELS],
        "Classification labels, least to most restricted: tables with `zh` and `en` names, an optional "
        "subject `tag` (e.g. \"[内部]\") and a `reach`: `organisation` (our local domains), `partners` "
        "(also the partner organisations' domains, `postroom partner add`) or `anyone`. A sender "
        "sets one in the webmail, by the header `X-Postroom-Classification: <zh or en name>` or by the "
        "subject tag; the label travels in that header (DKIM-signed) and as a first line of a plain-text "
        "body. Recipients beyond its reach are held until an approver releases the message."),
    Key("labels", "default", "",
        "The label of mail that names none (zh or en name; empty: the second of the list, or the only one)."),
    Key("labels", "approvers", "",
        "The office: the group whose members approve or reject held mail when the sender's department has "
        "no leader on the way up (`postroom department set-leader`), and who may decide any held message "
        "but their own; each request is mailed to the leader asked, else to them. Empty: only leaders "
        "approve, and other held mail waits until a group is set (`postroom config check` says so)."),
    Key("labels", "classified", "敏感",
        "The label of an official document with a 密级 (GB/T 9704 §7.2.2) sent by the document bridge; "
        "documents without one carry the default."),
    Key("labels", "enabled", False,
        "Enforce labels (stamp, hold and approve); off: mail carries no label. Off by default and not turned "
        "on by `postroom init`: until partners, leaders and an office of two or more are set, every message "
        "to another organisation would wait for an approval nobody can give."),
    Key("documents", "org", "",
        "This site's organisation code, as partners name it in manifests (e.g. \"futian\"). Empty: no document "
        "intake runs (documents can still be dispatched)."),
    Key("documents", "address", "",
        "The documents account: where partners send documents and receipts (its INBOX is the intake; "
        "registered documents are filed in its folder 收文). Required when [documents] org is set."),
    Key("documents", "registrars", [],
        "Accounts that read and sign for incoming documents: they get rights on the 收文 folder and a notice "
        "per new document."),
    Key("documents", "dispatchers", [],
        "Accounts that may dispatch documents and see their tracking through the JSON API (POST /api/v1/documents) "
        "with their own API token, besides server administrators."),
    Key("documents", "webhook_source", "",
        "The source (workflow system) whose webhook endpoint (`postroom webhook set`) is told of documents: "
        "document.registered and document.signed here, document.delivered/registered/signed per recipient "
        "organisation of a dispatched one (docs/webhooks.md). Empty: no callbacks."),
    Key("documents", "remind_urgent_after", 7200,
        "Seconds after dispatch by which each recipient organisation should have signed for a 特急 (urgent) "
        "document; then its sender gets one reminder mail (and a document.overdue callback). 0: no reminders."),
    Key("documents", "remind_expedited_after", 86400,
        "The same for a 加急 (expedited) document. 0: no reminders."),
    Key("documents", "registration_pattern", "收〔{year}〕{seq}号",
        "Registration number of an incoming document: {year} (local calendar year) and {seq} (from 1 each year)."),
    # --- [auth]: password hashing and the login cache (issue 7, "Logins") -------------------------------
    Key("auth", "argon2_time_cost", 2,
        "Argon2id passes per password hash. Default: OWASP's recommended floor (2 passes over 19 MiB, 1 lane), "
        "chosen so a morning's login storm of phones and Outlook is not CPU-bound (500 clients: about 3 s "
        "against 20 s with RFC 9106's low-memory profile of 3 passes, 64 MiB, 4 lanes, which can be set here). "
        "Stored hashes are redone at the next login when the cost changes."),
    Key("auth", "argon2_memory_cost", 19456, "Argon2id memory per password hash, in KiB (at least 8 per lane)."),
    Key("auth", "argon2_parallelism", 1, "Argon2id lanes per password hash."),
    Key("auth", "hash_threads", 0,
        "Password hashes computed at once, off the event loop (0: one per CPU core); further logins wait."),
    Key("auth", "credential_cache_ttl", 300,
        "Seconds a verified login is remembered (as a keyed hash, in memory) so reconnecting clients skip "
        "Argon2; a password change, disable or app-password revocation ends it at once. 0 disables."),
    Key("auth", "credential_cache_size", 10000, "Most verified logins remembered at once."),
    # --- end [auth] -----------------------------------------------------------------------------------
    # --- [webhooks]: signed callbacks to the workflow systems (issue 11 point 5; docs/webhooks.md) ------
    Key("webhooks", "timeout", 10,
        "Seconds one callback request may take, connecting included; no 2xx answer by then is a failed attempt."),
    Key("webhooks", "concurrency", 8, "Callback requests in flight at once per node."),
    Key("retention", "interval", 86400,
        "Seconds between retention runs (docs/retention.md); the first runs `first_delay` after start; 0: never "
        "(then only `postroom retention run`)."),
    Key("retention", "first_delay", 300, "Seconds after start before the first retention run."),
    Key("webhooks", "retry_base", 10,
        "Seconds before the first retry of a failed callback; each further retry waits twice as long (with "
        "jitter: a delay is drawn from the upper half of its step), up to `retry_max_delay`."),
    Key("webhooks", "retry_max_delay", 3600, "Longest wait between two attempts of one callback, in seconds."),
    Key("webhooks", "max_age", 259200,
        "Seconds after which a callback no receiver acknowledged is given up (dead, and logged); default 3 days."),
    Key("webhooks", "lease", 60,
        "Seconds a node's claim on a callback lasts; longer than `timeout`. A node that dies mid-request loses "
        "its claims after this and they are sent again (receivers dedupe on the webhook-id header)."),
    Key("webhooks", "allow_plain_http", False,
        "Allow http:// callback URLs to hosts other than loopback (default: https only, except to loopback)."),
    Key("webhooks", "keep_days", 7, "Days delivered and dead callbacks stay in the outbox before they are removed."),
    # --- end [webhooks] -------------------------------------------------------------------------------
    # --- [pull]: pull mode at a district whose link takes no connections (issue 12 point 5; docs/pull.md) ---
    Key("pull", "upstream", "",
        "\"host:port\" of the city's IMAP listener holding this site's mail (its route there is "
        "`pull:ACCOUNT`); empty: pull mode is off. Mail is fetched, delivered here and only then removed there."),
    Key("pull", "tls", "imaps", "How to reach `upstream`: imaps (implicit TLS, RFC 8314) or starttls (RFC 3501)."),
    Key("pull", "ca_file", "",
        "PEM file of the certificate(s) to trust for `upstream` (e.g. a copy of the city's self-signed "
        "<data_dir>/tls/cert.pem); empty: the system's CAs. The host name is always checked."),
    Key("pull", "account", "", "The pull account at the city (printed by the city's `postroom route add ... pull:ACCOUNT`)."),
    Key("pull", "password", "", "Its password (prefer `password_file`)."),
    Key("pull", "password_file", "",
        "File holding the password (relative: under [server] data_dir); read at start, overrides `password`."),
    Key("pull", "interval", 300,
        "Seconds between fetches by `postroom serve`; 0: only at start and by `postroom pull now` (run it from "
        "the link-up script, e.g. /etc/ppp/ip-up.d)."),
    Key("pull", "timeout", 60,
        "Seconds an IMAP command to `upstream` may wait without a byte arriving before the round is given up."),
    # --- end [pull] ---------------------------------------------------------------------------------
)

_BY_SECTION: dict[str, dict[str, Key]] = {}
for _k in KEYS:
    _BY_SECTION.setdefault(_k.section, {})[_k.name] = _k


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Config:
    path: Path | None
    values: dict[str, dict[str, Any]] = field(repr=False)

    def get(self, section: str, name: str) -> Any:
        return self.values[section][name]

    @property
    def hostname(self) -> str:
        return self.get("server", "hostname")

    @property
    def data_dir(self) -> Path:
        d = Path(self.get("server", "data_dir"))
        if not d.is_absolute() and self.path is not None:
            d = self.path.parent / d
        return d

    @property
    def audit_anchor_path(self) -> Path:
        v = self.get("server", "audit_anchor")
        return Path(v) if v else self.data_dir / "audit-anchors.txt"

    def listen(self, name: str) -> tuple[str, int] | None:
        v = self.get("listen", name)
        return parse_hostport(v) if v else None

    @property
    def tls_cert(self) -> Path:
        v = self.get("tls", "cert")
        return Path(v) if v else self.data_dir / "tls" / "cert.pem"

    @property
    def tls_key(self) -> Path:
        v = self.get("tls", "key")
        return Path(v) if v else self.data_dir / "tls" / "key.pem"

    @property
    def storage_url(self) -> str:
        return self.get("storage", "url") or f"sqlite:///{(self.data_dir / 'postroom.db').resolve()}"

    def storage(self) -> StorageConfig:
        blob_dir = self.get("storage", "blob_dir")
        if blob_dir and not Path(blob_dir).is_absolute():
            blob_dir = str(self.data_dir / blob_dir)
        return StorageConfig(url=self.storage_url, mode=self.get("storage", "mode"),
                             departments=tuple(self.get("storage", "departments")),
                             partition_url=self.get("storage", "partition_url"), blob_dir=blob_dir)


def parse_hostport(v: str) -> tuple[str, int]:
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) <= 65535):
        raise ValueError(f"{v!r} is not host:port")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def _check_value(key: Key, value: Any) -> str | None:
    where = f"[{key.section}] {key.name}"
    want = type(key.default)
    if want is bool and not isinstance(value, bool):
        return f"{where}: expected true or false, got {value!r}"
    if want is int and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{where}: expected a whole number, got {value!r}"
    if want is int and value < 0:
        return f"{where}: cannot be negative"
    if want is str and not isinstance(value, str):
        return f"{where}: expected a string, got {value!r}"
    if want is list and not isinstance(value, list):
        return f"{where}: expected a list, got {value!r}"
    if key.section == "clients" and key.name.endswith("_port") and value > 65535:
        return f"{where}: {value} is not a TCP port"
    if (key.section, key.name) == ("labels", "list") and (err := check_labels(value)):
        return f"{where}: {err}"
    if (key.section, key.name) == ("documents", "registration_pattern"):
        from mailboxes.documents import check_pattern
        from mailboxes.errors import InvalidInput

        try:
            check_pattern(value)
        except InvalidInput as exc:
            return f"{where}: {exc}"
    if (key.section, key.name) in (("listen", "proxy_trusted"), ("listen", "http_forwarded_trusted")):
        return _check_networks(where, value)
    if key.section == "listen" and value:
        try:
            parse_hostport(value)
        except ValueError:
            return f"{where}: expected \"host:port\" or \"\", got {value!r}"
    if (key.section, key.name) == ("storage", "mode") and value not in MODES:
        return f"{where}: must be one of {', '.join(MODES)}, got {value!r}"
    if (key.section, key.name) == ("server", "log_level") and value not in ("debug", "info", "warning", "error"):
        return f"{where}: must be debug, info, warning or error"
    if key.section == "auth" and (err := _check_auth(key, value)):
        return f"{where}: {err}"
    if key.section == "webhooks" and key.name not in ("allow_plain_http", "keep_days") and value < 1:
        return f"{where}: must be at least 1"
    if key.section == "pull" and (err := _check_pull(key, value)):
        return f"{where}: {err}"
    if (key.section, key.name) == ("queue", "lease") and value < 1:
        return f"{where}: must be at least 1 second"
    if (key.section, key.name) in (("queue", "retry_delays"), ("queue", "probe_delays")) and (
            not value or not all(isinstance(x, int) and x > 0 for x in value)):
        return f"{where}: must be a non-empty list of positive seconds"
    return None


def _check_pull(key: Key, value: Any) -> str | None:
    if key.name == "upstream" and value:
        try:
            host, port = parse_hostport(value)
        except ValueError:
            return f"expected \"host:port\" or \"\", got {value!r}"
        if not port or host == "0.0.0.0":
            return "name the city's host and port"
    if key.name == "tls" and value not in ("imaps", "starttls"):
        return "must be imaps or starttls"
    if key.name == "timeout" and value < 1:
        return "must be at least 1 second"
    return None


def _check_networks(where: str, value: list) -> str | None:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except (TypeError, ValueError):
            return f"{where}: expected networks like \"10.0.0.0/24\", got {net!r}"
    return None


def _check_auth(key: Key, value: int) -> str | None:
    """Argon2 bounds (RFC 9106 §3.1): at least one pass and one lane, 8 KiB of memory per lane."""
    if key.name in ("argon2_time_cost", "argon2_parallelism", "credential_cache_size") and value < 1:
        return "must be at least 1"
    if key.name == "argon2_parallelism" and value > 255:
        return "must be at most 255"
    if key.name == "argon2_memory_cost" and value < 8:
        return "must be at least 8 KiB"
    return None


def build(raw: dict[str, Any], path: Path | None = None) -> Config:
    """Check every key and collect every problem before failing (one line each)."""
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {s: {k: v.default for k, v in keys.items()} for s, keys in _BY_SECTION.items()}
    for section, body in raw.items():
        if section not in _BY_SECTION:
            problems.append(f"[{section}]: unknown section")
            continue
        if not isinstance(body, dict):
            problems.append(f"[{section}]: expected a table")
            continue
        for name, value in body.items():
            key = _BY_SECTION[section].get(name)
            if key is None:
                problems.append(f"[{section}] {name}: unknown key")
                continue
            err = _check_value(key, value)
            if err:
                problems.append(err)
            else:
                values[section][name] = value
    auth = values["auth"]
    if not problems and auth["argon2_memory_cost"] < 8 * auth["argon2_parallelism"]:
        problems.append("[auth] argon2_memory_cost: must be at least 8 KiB per lane (argon2_parallelism)")
    documents = values["documents"]
    if not problems and documents["org"] and "@" not in documents["address"]:
        problems.append("[documents] address: the documents account is required when [documents] org is set")
    pull = values["pull"]
    if not problems and pull["upstream"] and ("@" not in pull["account"] or
                                              not (pull["password"] or pull["password_file"])):
        problems.append("[pull] account: pull mode needs the account and its password (or password_file)")
    labels = values["labels"]
    if not problems and labels["default"] and Labels(labels["list"]).find(labels["default"]) is None:
        problems.append("[labels] default: must name a label of [labels] list")
    if not problems and labels["classified"] and Labels(labels["list"]).find(labels["classified"]) is None:
        problems.append("[labels] classified: must name a label of [labels] list")
    hooks = values["webhooks"]
    if not problems and hooks["lease"] <= hooks["timeout"]:
        problems.append("[webhooks] lease: must be longer than [webhooks] timeout")
    if problems:
        raise ConfigError(problems)
    return Config(path, values)


def load(path: str | os.PathLike | None = None) -> Config:
    """Load from `path`, else $POSTROOM_CONFIG, else ./postroom.toml if present, else defaults."""
    p = path or os.environ.get(ENV_VAR)
    if not p:
        if not Path(DEFAULT_PATH).exists():
            return build({}, None)
        p = DEFAULT_PATH
    p = Path(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read ({exc.strerror})"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML ({exc})"]) from None
    return build(raw, p.resolve())


def render_docs() -> str:
    """The reference of every key, in Markdown (docs/config.md)."""
    out = ["# Configuration reference", "",
           "Postroom reads one TOML file: `--config PATH`, else `$POSTROOM_CONFIG`, else `./postroom.toml`.",
           "Every key is optional; the default is shown.", ""]
    for section, keys in _BY_SECTION.items():
        out.append(f"## [{section}]")
        out.append("")
        out.append("| key | default | meaning |")
        out.append("| --- | --- | --- |")
        for k in keys.values():
            dv = repr(k.default).replace("'", '"') if not isinstance(k.default, bool) else str(k.default).lower()
            out.append(f"| `{k.name}` | `{dv}` | {k.doc} |")
        out.append("")
    return "\n".join(out)
