"""Governance commands: tenants, keys, grants, decrypt, retention, dsar, audit.

Every command takes ``--control-plane URL`` (default ``sqlite:///$CCPIPE_HOME/control.db``) and, when
it acts, ``--actor NAME --role operator|customer_admin [--actor-tenant T]``: who is recorded in the
audit log. (Authentication is the deployment's: these flags carry the identity it established.)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import json
import sys

from ccpipe.controlplane import access, audit, dsar, keys, retention, tenants_repo
from ccpipe.controlplane.db import open_control_plane
from ccpipe.errors import ConfigError
from ccpipe.keystore import KeystoreConfig, SqliteKeyStore, ccpipe_home


def _common(parser: argparse.ArgumentParser, actor: bool = True) -> None:
    parser.add_argument("--control-plane", help="sqlite:///path or postgresql://... (default under $CCPIPE_HOME)")
    parser.add_argument("--keystore", help="keystore file (default $CCPIPE_HOME/keystore.db)")
    parser.add_argument("--master-key-file", help="master key file (default $CCPIPE_HOME/master.key)")
    if actor:
        parser.add_argument("--actor", required=True, help="who acts (recorded in the audit log)")
        parser.add_argument("--role", required=True, choices=["operator", "customer_admin"])
        parser.add_argument("--actor-tenant", help="the tenant a customer_admin administers")


def _open(args):
    if not args.control_plane:
        ccpipe_home().mkdir(parents=True, exist_ok=True)
    return open_control_plane(args.control_plane)


def _keys(args) -> SqliteKeyStore:
    default = KeystoreConfig.default()
    return SqliteKeyStore(
        KeystoreConfig(args.keystore or default.path, args.master_key_file or default.master_key_file)
    )


def _actor(args) -> audit.Actor:
    return audit.Actor(args.actor, args.role, args.actor_tenant)


def _date(text: str | None) -> _dt.datetime:
    if not text:
        return _dt.datetime.now(_dt.UTC)
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r} must be an ISO date (YYYY-MM-DD) or time") from None
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def tenants_main(argv: list[str]) -> int:
    """``ccpipe tenants import FILE | list``."""
    from ccpipe.tenants import load_tenants

    parser = argparse.ArgumentParser(prog="ccpipe tenants", description="Tenants in the control plane.")
    parser.add_argument("action", choices=["import", "list"])
    parser.add_argument("file", nargs="?", help="registry file to import (YAML or JSON)")
    _common(parser, actor=False)
    parser.add_argument("--actor", default=getpass.getuser())
    args = parser.parse_args(argv)
    cp = _open(args)
    if args.action == "import":
        if not args.file:
            parser.error("import needs a FILE")
        n = tenants_repo.import_tenants(cp, load_tenants(args.file).values(), audit.Actor(args.actor, "operator"))
        print(f"imported {n} tenants")
    for t in tenants_repo.load(cp).values():
        print(f"{t.tenant_id:<16} {t.region:<4} {t.status:<10} {t.terminated_at or '':<26} {t.name}")
    return 0


def keys_main(argv: list[str]) -> int:
    """``ccpipe keys init|list|rotate|shred``."""
    parser = argparse.ArgumentParser(prog="ccpipe keys", description="Manage the keystore and key lifecycle.")
    parser.add_argument("action", choices=["init", "list", "rotate", "shred"])
    parser.add_argument("--tenant", help="tenant (rotate, shred)")
    parser.add_argument("--before", help="shred only content key versions created before this ISO date")
    parser.add_argument("--confirm", help="shred: the tenant id again (irreversible)")
    parser.add_argument("--reason", default="", help="why (recorded)")
    _common(parser, actor=False)
    parser.add_argument("--actor")
    parser.add_argument("--role", choices=["operator", "customer_admin"])
    parser.add_argument("--actor-tenant")
    args = parser.parse_args(argv)
    default = KeystoreConfig.default()
    config = KeystoreConfig(args.keystore or default.path, args.master_key_file or default.master_key_file)
    store = SqliteKeyStore(config, create=args.action == "init")
    if args.action in ("rotate", "shred"):
        if not (args.tenant and args.actor and args.role):
            parser.error(f"{args.action} needs --tenant, --actor and --role")
        cp = _open(args)
        if args.action == "rotate":
            print(json.dumps(keys.rotate(cp, store, args.tenant, _actor(args))))
        else:
            print(
                json.dumps(
                    keys.shred(cp, store, args.tenant, _actor(args), args.confirm or "", args.before, args.reason)
                )
            )
        return 0
    if args.action == "init":
        print(f"keystore ready: {config.path}")
    for owner, purpose, version, state in store.versions():
        print(f"{owner:<28} {purpose:<10} v{version:<3} {state}")
    return 0


def grants_main(argv: list[str]) -> int:
    """``ccpipe grants add|revoke|list``."""
    parser = argparse.ArgumentParser(prog="ccpipe grants", description="Operator access grants.")
    parser.add_argument("action", choices=["add", "revoke", "list"])
    parser.add_argument("--tenant")
    parser.add_argument("--grantee", help="operator name (add)")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--grant-id")
    parser.add_argument("--reason", default="")
    _common(parser)
    args = parser.parse_args(argv)
    cp = _open(args)
    if args.action == "add":
        print(access.add_grant(cp, _actor(args), args.tenant, args.grantee, args.days, args.reason))
    elif args.action == "revoke":
        access.revoke_grant(cp, _actor(args), args.grant_id)
    for row in cp.query(
        "SELECT grant_id, tenant_id, grantee, granted_by, expires_at, revoked_at FROM grants "
        "WHERE (? IS NULL OR tenant_id = ?) ORDER BY created_at",
        (args.tenant, args.tenant),
    ):
        print(" ".join(str(x) for x in row))
    return 0


def decrypt_main(argv: list[str]) -> int:
    """``ccpipe decrypt``: one encrypted field of one row, after the access check."""
    parser = argparse.ArgumentParser(prog="ccpipe decrypt", description="Decrypt one field (audited).")
    parser.add_argument("--output", required=True, help="sink root")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--dataset", required=True, choices=["calls", "telemetry", "chat_messages", "registrations"])
    parser.add_argument("--record-id", required=True)
    parser.add_argument("--field", required=True, help="e.g. transcript, text, email, calling_number")
    parser.add_argument("--seq", type=int, help="message number (chat_messages)")
    parser.add_argument("--reason", required=True)
    _common(parser)
    args = parser.parse_args(argv)
    print(
        access.decrypt_field(
            _open(args),
            _keys(args),
            args.output,
            _actor(args),
            args.tenant,
            args.dataset,
            args.record_id,
            args.field,
            args.reason,
            args.seq,
        )
    )
    return 0


def retention_main(argv: list[str]) -> int:
    """``ccpipe retention run``."""
    parser = argparse.ArgumentParser(prog="ccpipe retention", description=retention.__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--output", required=True, help="sink root")
    parser.add_argument("--as-of", help="ISO date (default: now)")
    parser.add_argument("--dry-run", action="store_true")
    _common(parser)
    args = parser.parse_args(argv)
    actions = retention.plan_and_apply(
        _open(args), _keys(args), args.output, _actor(args), _date(args.as_of), args.dry_run
    )
    for a in actions:
        print(f"{'would ' if args.dry_run else ''}{a.kind:<17} {a.rows:>6} rows  {a.target}  ({a.rule})")
    suffix = " (dry run: nothing changed)" if args.dry_run else ""
    print(f"{len(actions)} actions, {sum(a.rows for a in actions)} rows{suffix}")
    return 0


def dsar_main(argv: list[str]) -> int:
    """``ccpipe dsar open|confirm-identity|run|list``."""
    parser = argparse.ArgumentParser(prog="ccpipe dsar", description=dsar.__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["open", "confirm-identity", "run", "list"])
    parser.add_argument("--tenant")
    parser.add_argument("--kind", choices=list(dsar.KINDS))
    parser.add_argument("--subject-kind", choices=sorted(dsar.SUBJECT_COLUMNS))
    parser.add_argument("--subject", help="the identifier (read from stdin when '-')")
    parser.add_argument("--request")
    parser.add_argument("--method", help="identity check performed (confirm-identity)")
    parser.add_argument("--output", help="sink root (run)")
    parser.add_argument("--out", help="report or bundle file (access, export)")
    parser.add_argument("--passphrase-file", help="export: file holding the bundle passphrase")
    parser.add_argument("--set", action="append", default=[], help="rectification: FIELD=VALUE")
    _common(parser)
    args = parser.parse_args(argv)
    cp = _open(args)
    if args.action == "open":
        subject = sys.stdin.readline().strip() if args.subject == "-" else (args.subject or "")
        print(
            dsar.open_request(
                cp, _keys(args), _actor(args), args.tenant or "", args.kind or "", args.subject_kind or "", subject
            )
        )
    elif args.action == "confirm-identity":
        dsar.confirm_identity(cp, _actor(args), args.request or "", args.method or "")
    elif args.action == "run":
        if not args.output:
            parser.error("run needs --output")
        passphrase = open(args.passphrase_file).read().strip() if args.passphrase_file else None
        changes = dict(item.split("=", 1) for item in args.set)
        print(
            json.dumps(
                dsar.execute(
                    cp, _keys(args), args.output, _actor(args), args.request or "", args.out, passphrase, changes
                ),
                sort_keys=True,
            )
        )
    else:
        for r in dsar.list_requests(cp, args.tenant):
            print(f"{r.request_id} {r.tenant_id:<14} {r.kind:<13} {r.status:<18} due {r.due_at[:10]}")
    return 0


def audit_main(argv: list[str]) -> int:
    """``ccpipe audit verify|list``."""
    parser = argparse.ArgumentParser(prog="ccpipe audit", description="The hash-chained audit log.")
    parser.add_argument("action", choices=["verify", "list"])
    _common(parser, actor=False)
    args = parser.parse_args(argv)
    cp = _open(args)
    if args.action == "list":
        for e in audit.entries(cp):
            print(
                f"{e['seq']:>5} {e['at']} {e['actor']:<12} {e['role']:<14} {e['action']:<16} "
                f"{e['tenant_id'] or '':<14} {e['target'] or ''} {e['outcome']}"
            )
        return 0
    problems = audit.verify(cp)
    n = len(audit.entries(cp))
    if problems:
        print(f"audit log TAMPERED: {len(problems)} problem(s) in {n} entries", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"audit log intact: {n} entries, chain verified")
    return 0


def transparency_main(argv: list[str]) -> int:
    """``ccpipe transparency ...``."""
    from ccpipe.transparency.cli import main

    return main(argv)


COMMANDS = {
    "transparency": transparency_main,
    "tenants": tenants_main,
    "keys": keys_main,
    "grants": grants_main,
    "decrypt": decrypt_main,
    "retention": retention_main,
    "dsar": dsar_main,
    "audit": audit_main,
}
