"""Governance commands: tenants, keys, grants, decrypt, retention, dsar, audit.

Every command takes ``--control_plane URL`` (default ``sqlite:///$CCPIPE_HOME/control.db``) and, when
it acts, ``--actor NAME --role operator|customer_admin [--actor_tenant T]``: who is recorded in the
audit log. (Authentication is the deployment's: these flags carry the identity it established.)
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from ccpipe.cli.common import (
    Parser,
    actor_of,
    as_of,
    common,
    keystore_config,
    open_keys,
    open_store,
    passphrase,
    require_actor,
    table,
)
from ccpipe.controlplane import access, audit, dsar, keys, retention, tenants_repo


def tenants_main(argv: list[str]) -> int:
    """``ccpipe tenants import FILE | list | subprocessor --tenant T --name N --on|--off --reason R``."""
    from ccpipe.flows import SUBPROCESSORS
    from ccpipe.tenants import load_tenants

    parser = Parser(prog="ccpipe tenants", description="Tenants in the control plane.")
    parser.add_argument("action", choices=["import", "list", "subprocessor"])
    parser.add_argument("file", nargs="?", help="registry file to import (YAML or JSON)")
    parser.add_argument("--tenant", help="subprocessor: the tenant")
    parser.add_argument("--name", choices=sorted(SUBPROCESSORS), help="subprocessor: which one")
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--on", dest="on", action="store_true", default=None, help="subprocessor: opt in")
    state.add_argument("--off", dest="on", action="store_false", help="subprocessor: opt out")
    parser.add_argument("--reason", default="", help="subprocessor: why (audited)")
    common(parser, actor=False)
    parser.add_argument("--actor", default=getpass.getuser())
    parser.add_argument("--role", default="operator", choices=["operator", "customer_admin"])
    parser.add_argument("--actor_tenant", help="the tenant a customer_admin administers")
    args = parser.parse_args(argv)
    cp = open_store(args)
    if args.action == "subprocessor":
        if not (args.tenant and args.name and args.on is not None):
            parser.error("subprocessor needs --tenant, --name and --on or --off")
        tenants_repo.set_subprocessor(cp, audit.Actor(args.actor, args.role, args.actor_tenant), args.tenant,
                                      args.name, args.on, args.reason)
        print(f"{args.tenant}: {args.name} {'on' if args.on else 'off'}")
        return 0
    if args.action == "import":
        if not args.file:
            parser.error("import needs a FILE")
        n = tenants_repo.import_tenants(cp, load_tenants(args.file).values(), audit.Actor(args.actor, "operator"))
        print(f"imported {n} tenants")
    print(table(["TENANT", "REGION", "STATUS", "TERMINATED_AT", "SUBPROCESSORS", "NAME"],
                [[t.tenant_id, t.region, t.status, t.terminated_at or "",
                  ",".join(n for n, on in t.subprocessors if on) or "-", t.name]
                 for t in tenants_repo.load(cp).values()]))
    return 0


def keys_main(argv: list[str]) -> int:
    """``ccpipe keys init|list|rotate|shred``."""
    parser = Parser(
        prog="ccpipe keys",
        description="Manage the keystore and key lifecycle. Shredding destroys the tenant's key-encryption key "
        "in the key manager (--kms), so no copy of the keystore can unwrap its keys again.",
    )
    parser.add_argument("action", choices=["init", "list", "rotate", "shred"])
    parser.add_argument("--tenant", help="tenant (rotate, shred)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--before",
        help="shred: only content key versions created before this ISO date or time (UTC unless it has an offset); "
        "refused when it would reach the active version",
    )
    scope.add_argument("--all", action="store_true", help="shred: every version of every key of the tenant")
    parser.add_argument("--confirm", help="shred: the tenant id again (irreversible)")
    parser.add_argument("--reason", default="", help="why (recorded)")
    common(parser, actor=False)
    parser.add_argument("--actor")
    parser.add_argument("--role", choices=["operator", "customer_admin"])
    parser.add_argument("--actor_tenant")
    args = parser.parse_args(argv)
    if args.action == "shred" and not (args.before or args.all):
        parser.error("shred needs --all (every version, irreversible) or --before DATE (older content versions)")
    if args.action != "shred" and (args.before or args.all):
        parser.error("--before and --all apply to shred only")
    config = keystore_config(args)
    store = open_keys(args, create=args.action == "init")
    try:
        if args.action in ("rotate", "shred"):
            if not (args.tenant and args.actor and args.role):
                parser.error(f"{args.action} needs --tenant, --actor and --role")
            cp = open_store(args)
            if args.action == "rotate":
                print(json.dumps(keys.rotate(cp, store, args.tenant, actor_of(args))))
            else:
                print(
                    json.dumps(
                        keys.shred(
                            cp, store, args.tenant, actor_of(args), args.confirm or "", args.before, args.reason
                        )
                    )
                )
            return 0
        if args.action == "init":
            print(f"keystore ready: {config.path} (key manager: {store.kms.url})")
        print(table(["OWNER", "PURPOSE", "VERSION", "STATE"],
                    [[owner, purpose, f"v{version}", state] for owner, purpose, version, state in store.versions()]))
        for owner, action, keep_from in store.pending_kek_jobs():
            print(f"pending KEK {action} of {owner} (keep from v{keep_from}): run 'ccpipe keys init' to finish it")
        return 0
    finally:
        store.close()


def grants_main(argv: list[str]) -> int:
    """``ccpipe grants add|revoke|list``."""
    parser = Parser(prog="ccpipe grants", description="Operator access grants.")
    parser.add_argument("action", choices=["add", "revoke", "list"])
    parser.add_argument("--tenant")
    parser.add_argument("--grantee", help="operator name (add)")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--grant_id")
    parser.add_argument("--reason", default="")
    common(parser)
    args = parser.parse_args(argv)
    require_actor(args)
    cp = open_store(args)
    if args.action == "add":
        print(access.add_grant(cp, actor_of(args), args.tenant, args.grantee, args.days, args.reason))
    elif args.action == "revoke":
        access.revoke_grant(cp, actor_of(args), args.grant_id)
    rows = cp.query(
        "SELECT grant_id, tenant_id, grantee, granted_by, expires_at, revoked_at FROM grants "
        "WHERE (? IS NULL OR tenant_id = ?) ORDER BY created_at",
        (args.tenant, args.tenant),
    )
    print(table(["GRANT", "TENANT", "GRANTEE", "GRANTED_BY", "EXPIRES_AT", "REVOKED_AT"], [list(r) for r in rows]))
    return 0


def decrypt_main(argv: list[str]) -> int:
    """``ccpipe decrypt``: one encrypted field of one row, after the access check."""
    parser = Parser(prog="ccpipe decrypt", description="Decrypt one field (audited).")
    parser.add_argument("--output", required=True, help="sink root")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--dataset", required=True, choices=["calls", "telemetry", "chat_messages", "registrations"])
    parser.add_argument("--record_id", required=True)
    parser.add_argument("--field", required=True, help="e.g. transcript, text, email, calling_number")
    parser.add_argument("--seq", type=int, help="message number (chat_messages)")
    parser.add_argument("--reason", required=True)
    common(parser)
    args = parser.parse_args(argv)
    require_actor(args)
    print(
        access.decrypt_field(
            open_store(args),
            open_keys(args),
            args.output,
            actor_of(args),
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
    parser = Parser(prog="ccpipe retention", description=retention.__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--output", required=True, help="sink root")
    parser.add_argument("--as_of", help="ISO date (default: now)")
    parser.add_argument("--dry_run", action="store_true")
    parser.add_argument("--confirm", action="store_true", help="allow destroying content keys (irreversible)")
    common(parser)
    args = parser.parse_args(argv)
    require_actor(args)
    actions = retention.plan_and_apply(
        open_store(args), open_keys(args), args.output, actor_of(args), as_of(args.as_of), args.dry_run,
        confirm=args.confirm,
    )
    for a in actions:
        print(f"{'would ' if args.dry_run else ''}{a.kind:<17} {a.rows:>6} rows  {a.target}  ({a.rule})")
    suffix = " (dry run: nothing changed)" if args.dry_run else ""
    print(f"{len(actions)} actions, {sum(a.rows for a in actions)} rows{suffix}")
    return 0


def dsar_main(argv: list[str]) -> int:
    """``ccpipe dsar open|confirm-identity|run|list``."""
    parser = Parser(prog="ccpipe dsar", description=dsar.__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["open", "confirm-identity", "run", "list", "open-bundle"])
    parser.add_argument("--tenant")
    parser.add_argument("--kind", choices=list(dsar.KINDS))
    parser.add_argument("--subject_kind", choices=sorted(dsar.SUBJECT_COLUMNS))
    parser.add_argument("--subject", help="'-': read the identifier from standard input (never on the command "
                        "line, where it would land in shell history)")
    parser.add_argument("--subject_file", help="a file holding the identifier (first line)")
    parser.add_argument("--in", dest="bundle", help="open-bundle: the export bundle to decrypt")
    parser.add_argument("--request")
    parser.add_argument("--method", help="identity check performed (confirm-identity)")
    parser.add_argument("--output", help="sink root (run)")
    parser.add_argument("--out", help="report or bundle file (access, export)")
    parser.add_argument("--passphrase_file", help="export, open-bundle: file holding the bundle passphrase "
                        "(else it is asked for at the terminal)")
    parser.add_argument("--set", action="append", default=[], help="rectification: FIELD=VALUE")
    common(parser)
    args = parser.parse_args(argv)
    require_actor(args)
    if args.action == "open-bundle":
        if not (args.bundle and args.request and args.out):
            parser.error("open-bundle needs --in BUNDLE, --request ID and --out FILE")
        plain = dsar.open_bundle(Path(args.bundle).read_bytes(), passphrase(args.passphrase_file),
                                 f"ccpipe-export/v1|{args.request}".encode())
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(plain)
        print(f"decrypted bundle of request {args.request} to {args.out}")
        return 0
    cp = open_store(args)
    if args.action == "open":
        if args.subject_file:
            subject = Path(args.subject_file).read_text(encoding="utf-8").splitlines()[0] if Path(
                args.subject_file).stat().st_size else ""
        elif args.subject == "-":
            subject = sys.stdin.readline().strip()
        else:
            parser.error("give the subject identifier on standard input (--subject -) or in a file (--subject_file)")
        print(
            dsar.open_request(
                cp, open_keys(args), actor_of(args), args.tenant or "", args.kind or "", args.subject_kind or "",
                subject,
            )
        )
    elif args.action == "confirm-identity":
        dsar.confirm_identity(cp, actor_of(args), args.request or "", args.method or "")
    elif args.action == "run":
        if not args.output:
            parser.error("run needs --output")
        bundle_pass = passphrase(args.passphrase_file) if dsar.get(cp, args.request or "").kind == "export" else None
        changes = dict(item.split("=", 1) for item in args.set)
        print(
            json.dumps(
                dsar.execute(
                    cp, open_keys(args), args.output, actor_of(args), args.request or "", args.out, bundle_pass, changes
                ),
                sort_keys=True,
            )
        )
    else:
        print(table(["REQUEST", "TENANT", "KIND", "STATUS", "DUE"],
                    [[r.request_id, r.tenant_id, r.kind, r.status, r.due_at[:10]]
                     for r in dsar.list_requests(cp, args.tenant)]))
    return 0


def audit_main(argv: list[str]) -> int:
    """``ccpipe audit verify [--against HEAD] | head [--out HEAD] | list | anchor --actor NAME --reason WHY``."""
    parser = Parser(
        prog="ccpipe audit",
        description="The keyed, hash-chained audit log. 'head' exports a signed head (seq, hash, MAC) to keep "
        "outside the database; 'verify --against HEAD' also fails when the log was cut short or rewritten "
        "since that head was exported. 'anchor' (an operator, once, audited) pins the entries written before the "
        "log was keyed; only for a log upgraded from before the keyed chain: unkeyed entries can be forged "
        "by anyone who can write the database.",
    )
    parser.add_argument("action", choices=["verify", "head", "list", "anchor"])
    parser.add_argument("--against", metavar="HEAD_FILE", help="verify: a head file exported by 'ccpipe audit head'")
    parser.add_argument("--out", metavar="HEAD_FILE", help="head: write the signed head here (default: stdout)")
    parser.add_argument("--actor", help="anchor: the operator who anchors (recorded in the audit log)")
    parser.add_argument("--reason", help="anchor: why (recorded in the audit log)")
    common(parser, actor=False)
    args = parser.parse_args(argv)
    if args.action == "anchor" and not (args.actor and args.reason):
        parser.error("anchor needs --actor and --reason")
    cp = open_store(args)
    if args.keystore or args.master_key_file or args.kms:
        cp.keys = open_keys(args)  # the audit key's key manager; default: the keystore under $CCPIPE_HOME
    if args.action == "list":
        print(table(["SEQ", "AT", "ACTOR", "ROLE", "ACTION", "TENANT", "TARGET", "OUTCOME"],
                    [[e["seq"], e["at"], e["actor"], e["role"], e["action"], e["tenant_id"], e["target"],
                      e["outcome"]] for e in audit.entries(cp)]))
        return 0
    if args.action == "anchor":
        seq = audit.anchor(cp, audit.Actor(args.actor, "operator"), args.reason)
        print(f"unkeyed entries anchored by entry {seq}")
        return 0
    if args.action == "head":
        signed = audit.head(cp)
        if args.out:
            audit.write_head(args.out, signed)  # O_EXCL|O_NOFOLLOW 0600 temporary file, then a rename
            print(f"signed head written to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(json.dumps(signed, sort_keys=True) + "\n")
        return 0
    head = None
    if args.against:
        try:
            with open(args.against) as handle:
                head = json.load(handle)
        except (OSError, ValueError) as err:
            print(f"audit log NOT VERIFIED: cannot read the head file {args.against}: {err}", file=sys.stderr)
            return 1
    problems = audit.verify(cp, head)
    n = len(audit.entries(cp))
    if problems:
        print(f"audit log TAMPERED: {len(problems)} problem(s) in {n} entries", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    against = (f"; matches the signed head at entry {head['seq']} exported at {head['exported_at']}"
               if head is not None else "")
    print(f"audit log intact: {n} entries, chain verified{against}")
    for e in audit.open_intents(cp):
        print(f"  open intent: entry {e['seq']} {e['action']} {e['tenant_id'] or ''} {e['target'] or ''} "
              f"at {e['at']} has no recorded outcome")
    return 0


COMMANDS = {
    "tenants": tenants_main,
    "keys": keys_main,
    "grants": grants_main,
    "decrypt": decrypt_main,
    "retention": retention_main,
    "dsar": dsar_main,
    "audit": audit_main,
}
