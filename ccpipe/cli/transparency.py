"""``ccpipe transparency``: maintain the government request ledger and produce the report."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from ccpipe.cli.common import Parser, actor_of, common, open_keys, open_store
from ccpipe.transparency import fixtures, ledger, report


def main(argv: list[str]) -> int:
    """Dispatch the transparency sub-commands."""
    parser = Parser(prog="ccpipe transparency", description=ledger.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)

    add = sub.add_parser("add", help="record a received request")
    add.add_argument("--agency", required=True)
    add.add_argument("--country", required=True, help="ISO 3166 alpha-2")
    add.add_argument("--type", required=True, choices=ledger.REQUEST_TYPES)
    add.add_argument("--tenant", action="append", required=True)
    add.add_argument("--category", action="append", required=True, choices=ledger.CATEGORIES)
    add.add_argument("--scope", required=True)
    add.add_argument("--received_at", required=True, help="RFC 3339 with offset")
    add.add_argument("--emergency", action="store_true")
    add.add_argument("--justification")

    auth = sub.add_parser("authority", help="record the legal-authority review")
    auth.add_argument("--request", required=True)
    auth.add_argument("--valid", choices=["yes", "no"], required=True)
    auth.add_argument("--notes", required=True)

    decide = sub.add_parser("decide", help="record the decision")
    decide.add_argument("--request", required=True)
    decide.add_argument("--decision", required=True, choices=ledger.DECISIONS)
    decide.add_argument("--scope_disclosed")
    decide.add_argument("--disclosure", action="append", default=[], help="completed export request id")

    disclose = sub.add_parser("disclose", help="export one subject's data for a request (encrypted)")
    disclose.add_argument("--request", required=True)
    disclose.add_argument("--tenant", required=True)
    disclose.add_argument("--subject_kind", required=True)
    disclose.add_argument("--subject", required=True, help="'-' reads it from stdin")
    disclose.add_argument("--output", required=True, help="sink root")
    disclose.add_argument("--out", required=True, help="bundle file")
    disclose.add_argument("--passphrase_file", required=True)

    notify = sub.add_parser("notify", help="record the customer notification or its prohibition")
    notify.add_argument("--request", required=True)
    notify.add_argument("--at", help="RFC 3339 (default now)")
    notify.add_argument("--prohibited", action="store_true")
    notify.add_argument("--basis")
    notify.add_argument("--challenged", action="store_true")

    close = sub.add_parser("close", help="close a decided, notified request")
    close.add_argument("--request", required=True)

    sub.add_parser("list", help="list the ledger")

    rep = sub.add_parser("report", help="the semiannual report")
    rep.add_argument("--period", required=True, help="e.g. 2026H1")
    rep.add_argument("--format", choices=["html", "csv", "json"], default="html")
    rep.add_argument("--draft", action="store_true", help="allow a period still under embargo (marked DRAFT)")
    rep.add_argument("--as_of", help="ISO date to judge the embargo by (default now)")
    rep.add_argument("--out", help="file (default stdout)")

    fx = sub.add_parser("fixtures", help="generate a realistic ledger (performs real, encrypted disclosures)")
    fx.add_argument("--output", required=True, help="pipeline output root holding call records")
    fx.add_argument("--bundles", default="transparency-bundles", help="folder for the disclosure bundles")
    fx.add_argument("--seed", type=int, default=1)
    fx.add_argument("--count", type=int, default=40)

    for p in (add, auth, decide, disclose, notify, close, fx):
        common(p)
    for p in (rep, sub.choices["list"]):
        common(p, actor=False)
    args = parser.parse_args(argv)
    cp = open_store(args)
    if args.action == "add":
        print(
            ledger.add(
                cp,
                actor_of(args),
                agency=args.agency,
                country=args.country,
                request_type=args.type,
                tenant_ids=args.tenant,
                categories=args.category,
                scope=args.scope,
                received_at=args.received_at,
                emergency=args.emergency,
                emergency_justification=args.justification,
            )
        )
    elif args.action == "authority":
        ledger.check_authority(cp, actor_of(args), args.request, args.valid == "yes", args.notes)
    elif args.action == "decide":
        ledger.decide(
            cp,
            actor_of(args),
            args.request,
            args.decision,
            scope_disclosed=args.scope_disclosed,
            disclosure_request_ids=args.disclosure,
        )
    elif args.action == "disclose":
        subject = sys.stdin.readline().strip() if args.subject == "-" else args.subject
        passphrase = Path(args.passphrase_file).read_text().strip()
        print(
            ledger.disclose(
                cp,
                open_keys(args),
                args.output,
                actor_of(args),
                args.request,
                args.tenant,
                args.subject_kind,
                subject,
                args.out,
                passphrase,
            )
        )
    elif args.action == "notify":
        ledger.notify(
            cp,
            actor_of(args),
            args.request,
            notified_at=args.at,
            prohibited=args.prohibited,
            basis=args.basis,
            challenged=args.challenged,
        )
    elif args.action == "close":
        ledger.close(cp, actor_of(args), args.request)
    elif args.action == "list":
        for r in ledger.list_all(cp):
            print(
                f"{r.request_id} {r.received_utc[:10]} {r.country} {r.request_type:<17} {r.decision or 'pending':<22} "
                f"{'notified' if r.notified_at else 'prohibited' if r.notification_prohibited else 'not notified':<13}"
                f" {r.status}{' EMERGENCY' if r.emergency else ''}"
            )
    elif args.action == "report":
        as_of = _dt.datetime.fromisoformat(args.as_of) if args.as_of else _dt.datetime.now(_dt.UTC)
        as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=_dt.UTC)
        data = report.build(ledger.list_all(cp), report.Period.parse(args.period), as_of, args.draft)
        text = {"html": report.to_html, "csv": report.to_csv, "json": report.to_json}[args.format](data)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    elif args.action == "fixtures":
        ids = fixtures.generate(cp, open_keys(args), args.output, Path(args.bundles), args.seed, args.count,
                                actor_of(args))
        print(f"added {len(ids)} government requests")
    return 0
