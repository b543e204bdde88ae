"""``ccpipe transparency``: maintain the government request ledger and produce the report.

``fixtures`` makes a demo ledger: it writes its requests only to its own control plane (default
``<output>/_demo/control.db``) and its bundles under ``<output>/_demo/bundles/``, and refuses any
control plane but a new, empty one or one it made before (never the default one under
``$CCPIPE_HOME``, nor a database holding tenants, audit history, grants, data-subject requests or
ledger entries of its own). Its disclosures decrypt real data, so each is audited (intent before,
outcome after) in the production control plane's audit log (``--audit_control_plane``, default the
one under ``$CCPIPE_HOME``), under an identity given on the command line (``--actor``/``--role``).
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


def _same_database(a: str, b: str) -> bool:
    """Whether two control plane URLs name the same database (same SQLite file, or the same URL)."""
    pa, pb = _sqlite_path(a), _sqlite_path(b)
    return pa == pb if pa is not None and pb is not None else a == b


def _fixture_identity(args: argparse.Namespace):
    """The identity of ``fixtures``: --actor and --role from the command line (no environment defaults)."""
    from ccpipe.controlplane import audit

    if not args.actor or not args.role:
        raise ConfigError(
            "--actor and --role are required on the command line: the demo discloses real customer data and the "
            "production audit log records who did it ($CCPIPE_ACTOR and $CCPIPE_ROLE do not apply here)"
        )
    if args.role != "operator":
        raise ConfigError("--role operator is required: only operators maintain the government request ledger")
    return audit.Actor(args.actor, args.role)


def _fixtures(args: argparse.Namespace) -> int:
    """``transparency fixtures``: a demo ledger in its own control plane, bundles under the output root.

    The real disclosures are audited in the production control plane (``--audit_control_plane``,
    default under ``$CCPIPE_HOME``) before anything is decrypted.
    """
    from ccpipe.controlplane import tenants_repo
    from ccpipe.controlplane.db import default_url, open_control_plane
    from ccpipe.keystore import prepare_sqlite_url
    from ccpipe.tenants import load_tenants

    actor = _fixture_identity(args)
    root = Path(args.output)
    if not root.is_dir():
        raise ConfigError(f"--output {args.output!r} is not a folder: give the pipeline output root with call records")
    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be at least 1")
    url = args.control_plane or fixtures.demo_control_plane_url(root)
    if _same_database(url, default_url()):
        raise ConfigError(
            f"--control_plane {url!r} is the default control plane of $CCPIPE_HOME; demo requests go to their own "
            "(omit --control_plane for OUTPUT/_demo/control.db)"
        )
    audit_url = args.audit_control_plane or default_url()
    audit_path = _sqlite_path(audit_url)
    demo_folder = fixtures.demo_dir(root).resolve()
    if _same_database(audit_url, url) or (audit_path is not None and audit_path.is_relative_to(demo_folder)):
        raise ConfigError(
            f"--audit_control_plane {fixtures.mask_url(audit_url)!r} is the demo's own state; the demo's real "
            "disclosures are audited in the production control plane (default under $CCPIPE_HOME)"
        )
    if args.audit_control_plane and audit_path is not None and not audit_path.is_file():
        raise ConfigError(
            f"--audit_control_plane {audit_url!r} does not exist: name the production control plane in use"
        )
    if not args.control_plane:
        fixtures.private_dir(fixtures.demo_dir(root))
    prepare_sqlite_url(url)
    cp = open_control_plane(url, keys=keystore_config(args))
    try:
        fixtures.require_demo_control_plane(cp)
        if not args.tenants and not tenants_repo.load(cp):
            raise ConfigError(
                f"--tenants is required: the demo control plane {url} has no tenants yet (give the tenants registry "
                "the batch run used)"
            )
        prepare_sqlite_url(args.audit_control_plane)  # the default under $CCPIPE_HOME: 0700 folder, 0600 file
        audit_cp = open_control_plane(audit_url, keys=keystore_config(args))
        try:
            fixtures.require_audit_control_plane(cp, audit_cp)
            fixtures.claim_demo_control_plane(cp, actor, root)
            if args.tenants:
                tenants_repo.import_tenants(cp, load_tenants(args.tenants).values(), actor)
            ids = fixtures.generate(
                cp, open_keys(args), str(root), seed=args.seed, count=args.count, actor=actor, audit_cp=audit_cp
            )
        finally:
            audit_cp.close()
    finally:
        cp.close()
    print(f"added {len(ids)} demo government requests to {url}")
    print(f"disclosure bundles, each with its passphrase file (0600): {fixtures.bundles_dir(root)}")
    print(f"each disclosure is audited ({fixtures.DISCLOSURE_ACTION}) in {fixtures.mask_url(audit_url)}")
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
        "encrypted disclosures into OUTPUT/_demo/bundles/, each audited in the production control plane",
    )
    fx.add_argument("--output", required=True, help="pipeline output root holding call records")
    fx.add_argument("--tenants", help="tenants registry of the batch run (imported into the demo control plane)")
    fx.add_argument("--seed", type=int, default=1)
    fx.add_argument("--count", type=int, default=40)
    fx.add_argument(
        "--audit_control_plane",
        help="the production control plane whose audit log records each real disclosure of the demo "
        "(default: the one under $CCPIPE_HOME; never the demo's own)",
    )

    for p in (add, auth, decide, disclose, notify, close, fx):
        common(p)
    # The demo decrypts real data: who does it is said on the command line, not taken from the environment.
    fx.set_defaults(actor=None, role=None, actor_tenant=None)
    fx_help = {
        "actor": "who acts (required on the command line; recorded in the production audit log)",
        "role": "operator (required on the command line)",
        "control_plane": "the demo's own control plane: new and empty, or made by fixtures before (default "
        "sqlite:///OUTPUT/_demo/control.db; never the default one under $CCPIPE_HOME)",
    }
    for action in fx._actions:
        action.help = fx_help.get(action.dest, action.help)
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
