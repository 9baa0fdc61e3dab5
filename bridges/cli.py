"""The `postroom partner` and `postroom dispatch` subcommands: partner organisations, dispatching documents, their tracking, registration and sign-for.

Wired into mailserver.cli through the composition root (mailserver.app.bridge_commands), so that
mailserver never imports bridges directly. Handlers take (admin, args) like cli.py's: `admin.mb`
is the opened store, `admin.config` the configuration, `admin.audited` the audit trail.
A dispatch from the command line is committed to the queue here; the running server's queue
worker sends it (at once on this node's next look, at most delivery.worker.IDLE_POLL_SECONDS).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mailboxes.errors import InvalidInput

from . import docservice
from .manifest import MAX_FILES, Document, describe_file

MAX_FILE_BYTES = 200 << 20  # one document file read from disk


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("partner", help="partner organisations that exchange official documents with this site")
    ps = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ps.add_parser("add", help="ORG DOMAIN: its code in manifests and its DKIM signing domain")
    a.add_argument("org")
    a.add_argument("domain")
    a.add_argument("--name", default="", help="its name, e.g. 福田区税务局")
    a.add_argument("--address", default="", help="its documents mailbox (default documents@DOMAIN)")
    ps.add_parser("list", help="the partners: code, name, DKIM domain, documents address")
    ps.add_parser("remove", help="ORG: stop accepting its documents").add_argument("org")

    s = sub.add_parser("dispatch", help="official documents: send, status, registered, sign, quarantine")
    ds = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ds.add_parser("send", help="dispatch MANIFEST.json with its FILES (PDF, OFD, Word) to its recipients")
    a.add_argument("manifest", help="the GB/T 9704 elements as JSON (attachments are filled in from FILES)")
    a.add_argument("files", nargs="*")
    a.add_argument("--from", dest="sender", required=True, help="the dispatching account's address")
    a = ds.add_parser("status", help="per recipient: queued, sent, delivered, registered, signed")
    a.add_argument("number", nargs="?", help="one document number (default: the latest documents)")
    a = ds.add_parser("registered", help="documents received and registered here")
    a.add_argument("--unsigned", action="store_true", help="only those not yet signed for")
    a = ds.add_parser("sign", help="sign for (签收) a registered document")
    a.add_argument("registration_number")
    a.add_argument("--by", required=True, help="who signs for it")
    ds.add_parser("quarantine", help="document messages held back (forged, unsigned, not a partner, malformed)")

    s = sub.add_parser("pull", help="pull mode: fetch this site's mail from the city ([pull] in the config)")
    ps = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    ps.add_parser("now", help="fetch now (run it from the link-up script)")


def _read_manifest(path: str, files: list[str]) -> tuple[Document, dict[str, bytes]]:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the manifest {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{path}: the manifest must be a JSON object")
    if len(files) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files")
    data: dict[str, bytes] = {}
    for f in files:
        p = Path(f)
        if p.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{f}: larger than {MAX_FILE_BYTES >> 20} MB")
        data[p.name] = p.read_bytes()
    obj["attachments"] = [describe_file(name, d).__dict__ for name, d in data.items()]
    return Document.from_json(obj), data


async def run_partner(admin, args: argparse.Namespace) -> int:
    docs = docservice.documents(admin.mb, admin.config)
    if args.action == "add":
        p = await docs.add_partner(args.org, args.domain, name=args.name, address=args.address)
        await admin.audited("partner.add", p.org, domain=p.domain, address=p.address)
        print(f"partner {p.org} ({p.name or '-'}): documents signed by {p.domain} accepted, sent to {p.address}")
    elif args.action == "list":
        for p in await docs.partners():
            print(f"{p.org}\t{p.name}\t{p.domain}\t{p.address}")
    else:
        await docs.remove_partner(args.org)
        await admin.audited("partner.remove", args.org)
        print(f"removed partner {args.org}")
    return 0


def _when(d) -> str:
    return d.astimezone().strftime("%Y-%m-%d %H:%M") if d else "-"


async def run_dispatch(admin, args: argparse.Namespace) -> int:
    from delivery.service import build as build_delivery

    docs = docservice.documents(admin.mb, admin.config)
    if args.action == "send":
        doc, files = _read_manifest(args.manifest, args.files)
        account = await admin.mb.directory.account(args.sender)
        parts = build_delivery(admin.mb, admin.config)
        out = await docservice.dispatcher(admin.mb, admin.config, parts).send(doc, files, sender=account.address,
                                                                              account=account)
        await admin.audited("dispatch.send", out.number, document_id=out.document_id,
                            recipients=",".join(out.replies), refused=",".join(out.refused))
        for org, reply in out.replies.items():
            print(f"{org}\t{reply}")
        return 1 if out.refused else 0
    if args.action == "status":
        for t in await docs.tracking(number=args.number):
            print(f"{t.number}\t{t.org}\t{t.state}\tqueued {_when(t.queued_at)}\tdelivered {_when(t.delivered_at)}\t"
                  f"registered {_when(t.registered_at)} {t.registration_number}\t"
                  f"signed {_when(t.signed_at)} {t.signed_by}".rstrip())
        return 0
    if args.action == "registered":
        for r in await docs.registrations(unsigned_only=args.unsigned):
            signed = f"signed {_when(r.signed_at)} {r.signed_by}" if r.signed_at else "not signed"
            print(f"{r.registration_number}\t{r.number}\t{r.partner_org}\t{r.urgency or '-'}\t{r.title}\t{signed}")
        return 0
    if args.action == "sign":
        parts = build_delivery(admin.mb, admin.config)
        intake = docservice.intake(admin.mb, admin.config, parts)
        if intake is None:
            raise InvalidInput("this site receives no documents: set [documents] org and address")
        reg, new = await intake.sign(args.registration_number, args.by)
        await admin.audited("dispatch.sign", reg.registration_number, by=args.by, new=new)
        print(f"{reg.registration_number} signed for by {reg.signed_by}" + ("" if new else " (already)"))
        return 0
    for qid, when, sender, reason, size in await docs.quarantined():
        print(f"{qid}\t{_when(when)}\t{sender}\t{size} bytes\t{reason}")
    return 0


async def run_pull(admin, args: argparse.Namespace) -> int:
    from delivery.service import build as build_delivery

    from . import pull

    fetcher = pull.build(admin.mb, admin.config, build_delivery(admin.mb, admin.config))
    if fetcher is None:
        raise InvalidInput("pull mode is off: set [pull] upstream, account and password")
    try:
        r = await fetcher.fetch()
    except pull.PullError as exc:
        raise InvalidInput(f"pull from {fetcher.cfg.upstream} failed: {exc}") from None
    if r.busy:
        print(f"another fetch from {fetcher.cfg.upstream} is running (the server's schedule); nothing done")
        return 0
    print(f"pulled from {fetcher.cfg.upstream}: {r.delivered} delivered, {r.bounced} bounced, "
          f"{r.duplicates} already here, {r.unsealed} not sealed by the city (removed), {r.oversize} too large "
          f"(left there), {r.held} held for the next round")
    return 0


HANDLERS = {"partner": run_partner, "dispatch": run_dispatch, "pull": run_pull}
