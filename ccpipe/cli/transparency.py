"""``ccpipe transparency``: maintain the government request ledger and produce the report.

``fixtures`` makes a demo ledger: it writes only to its own control plane (default
``<output>/_demo/control.db``) and under ``<output>/_demo/bundles/``, and refuses a control plane
whose ledger holds real requests, or the default one under ``$CCPIPE_HOME``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ccpipe.cli.common import Parser, actor_of, as_of, common, keystore_config, open_keys, open_store
from ccpipe.errors import ConfigError
from ccpipe.transparency import fixtures, ledger, report

PROVIDER_ENV = "CCPIPE_PROVIDER"


def _sqlite_path(url: str) -> Path | None:
    if url.startswith(("postgresql://", "postgres://")):
        return None
    return Path(url.removeprefix("sqlite:///")).expanduser().resolve()


def _fixtures(args: argparse.Namespace) -> int:
    """``transparency fixtures``: a demo ledger in its own control plane, bundles under the output root."""
    from ccpipe.controlplane import tenants_repo
    from ccpipe.controlplane.db import default_url, open_control_plane
    from ccpipe.keystore import prepare_sqlite_url
    from ccpipe.tenants import load_tenants

    actor = actor_of(args)
    root = Path(args.output)
    if not root.is_dir():
        raise ConfigError(f"--output {args.output!r} is not a folder: give the pipeline output root with call records")
    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be at least 1")
    url = args.control_plane or fixtures.demo_control_plane_url(root)
    if _sqlite_path(url) is not None and _sqlite_path(url) == _sqlite_path(default_url()):
        raise ConfigError(
            f"--control_plane {url!r} is the default control plane of $CCPIPE_HOME; demo requests go to their own "
            "(omit --control_plane for OUTPUT/_demo/control.db)"
        )
    if not args.control_plane:
        fixtures.private_dir(fixtures.demo_dir(root))
    prepare_sqlite_url(url)
    cp = open_control_plane(url, keys=keystore_config(args))
    try:
        ledger.require_demo_ledger(cp)
        if args.tenants:
            tenants_repo.import_tenants(cp, load_tenants(args.tenants).values(), actor)
        elif not tenants_repo.load(cp):
            raise ConfigError(
                f"--tenants is required: the demo control plane {url} has no tenants yet (give the tenants registry "
                "the batch run used)"
            )
        ids = fixtures.generate(cp, open_keys(args), str(root), seed=args.seed, count=args.count, actor=actor)
    finally:
        cp.close()
    print(f"added {len(ids)} demo government requests to {url}")
    print(f"disclosure bundles, each with its passphrase file (0600): {fixtures.bundles_dir(root)}")
    print(f"report: ccpipe transparency report --control_plane {url} --period 2026H1 --provider NAME --draft")
    return 0


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
    rep.add_argument(
        "--provider",
        default=os.environ.get(PROVIDER_ENV),
        help=f"the provider's name shown in the report (default ${PROVIDER_ENV})",
    )
    rep.add_argument("--format", choices=["html", "csv", "json"], default="html")
    rep.add_argument("--draft", action="store_true", help="allow a period still under embargo (marked DRAFT)")
    rep.add_argument("--as_of", help="ISO date to judge the embargo by (default now)")
    rep.add_argument("--out", help="file (default stdout)")

    fx = sub.add_parser(
        "fixtures",
        help="generate a demo ledger in its own control plane (default OUTPUT/_demo/control.db); performs real, "
        "encrypted disclosures into OUTPUT/_demo/bundles/",
    )
    fx.add_argument("--output", required=True, help="pipeline output root holding call records")
    fx.add_argument("--tenants", help="tenants registry of the batch run (imported into the demo control plane)")
    fx.add_argument("--seed", type=int, default=1)
    fx.add_argument("--count", type=int, default=40)

    for p in (add, auth, decide, disclose, notify, close, fx):
        common(p)
    for p in (rep, sub.choices["list"]):
        common(p, actor=False)
    args = parser.parse_args(argv)
    if args.action == "fixtures":
        return _fixtures(args)
    if args.action == "report" and not args.provider:
        raise ConfigError(f"--provider is required (or set ${PROVIDER_ENV}): the provider's name shown in the report")
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
                f" {r.status}{' EMERGENCY' if r.emergency else ''}{' DEMO' if r.demo else ''}"
            )
    elif args.action == "report":
        data = report.build(
            ledger.list_all(cp), report.Period.parse(args.period), as_of(args.as_of), args.draft, provider=args.provider
        )
        text = {"html": report.to_html, "csv": report.to_csv, "json": report.to_json}[args.format](data)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    return 0
