"""A realistic, deterministic demo ledger of government requests, made through the ledger's own rules.

Demo data stays demo data. The requests are made up, so they go to their own control plane (by
default ``<output>/_demo/control.db``), are stored with the ledger's ``demo`` mark, and are refused
by a ledger that already holds real requests. A demo control plane is a new, empty database that
the fixtures mark as theirs (``claim_demo_control_plane``: the first entry of its audit log is a
``demo_control_plane`` entry); a database holding anything else (tenants, grants, data-subject
requests, audit entries, ledger entries, ...) is refused, so a production database never takes
demo requests (which would lock its ledger against real ones).

Disclosures are real: each is a scoped, encrypted export of one subject's data from a pipeline
output root (``--output``), decrypted with the production keystore, written under
``<output>/_demo/bundles/`` (folder 0700) with its random passphrase in a 0600 file beside it
(``<id>.passphrase``); passphrases are never printed or derived from the seed. So that no real data
is ever decrypted without a trace that outlives the throwaway demo control plane, every disclosure
is recorded in the production audit log (``audit_cp``, never the demo control plane): a
``demo_disclosure`` intent (actor, tenant, demo request id, bundle path) is committed there before
the subject's data is first decrypted, and its outcome (``ok`` with the export's request id, or
``failed``) after. Picking the demo's subjects decrypts nothing: a tenant qualifies when one of its
calls has a calling number whose key is still held.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import re
import secrets
from pathlib import Path

from ccpipe import crypto, store
from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import ConfigError, KeyUnavailableError
from ccpipe.keystore import SqliteKeyStore
from ccpipe.transparency import ledger
from ccpipe.types import Tenant

AGENCIES = [
    ("Federal Bureau of Investigation", "US"),
    ("Metropolitan Police Service", "GB"),
    ("Politie Nederland", "NL"),
    ("Australian Federal Police", "AU"),
    ("Singapore Police Force", "SG"),
    ("Hong Kong Police Force", "HK"),
    ("Polícia Federal", "BR"),
    ("Bundeskriminalamt", "DE"),
]
TYPES = ["search_warrant", "court_order", "subpoena", "emergency", "national_security", "other"]
TYPE_WEIGHTS = [30, 25, 20, 6, 9, 10]
START = _dt.datetime(2025, 7, 1, tzinfo=_dt.UTC)
SPAN_DAYS = 548  # 2025H2 to 2026H2
DEMO_DIR = "_demo"
DEMO_MARK = "demo_control_plane"  # the first audit entry of a control plane made by the fixtures
DISCLOSURE_ACTION = "demo_disclosure"  # production audit entries of the demo's real disclosures
DISCLOSURE_REASON = "demo disclosure of real customer data ('ccpipe transparency fixtures')"
# What a control plane holds, by table: a demo control plane starts with none of it.
HOLDINGS = (
    ("tenants", "tenants"),
    ("grants", "grants"),
    ("key_events", "key events"),
    ("dsar_requests", "data-subject requests"),
    ("restrictions", "restrictions"),
    ("sink_roots", "sink roots"),
    ("gov_requests", "government requests"),
    ("audit_log", "audit entries"),
)


def demo_dir(root: str | Path) -> Path:
    """The folder of the demo's own state under a pipeline output root."""
    return Path(root) / DEMO_DIR


def bundles_dir(root: str | Path) -> Path:
    """Where the demo disclosures (encrypted bundles and their passphrase files) go."""
    return demo_dir(root) / "bundles"


def demo_control_plane_url(root: str | Path) -> str:
    """The demo's own control plane: ``sqlite:///<root>/_demo/control.db``."""
    return f"sqlite:///{demo_dir(root) / 'control.db'}"


def private_dir(path: Path) -> Path:
    """Make ``path`` (and its parents) a folder readable by its owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a new file created 0600 (never over an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def mask_url(url: str) -> str:
    """A control plane URL fit for a message or an audit entry (its password masked)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def holdings(cp: ControlPlane) -> dict[str, int]:
    """How many rows each table of the control plane holds (by the names in ``HOLDINGS``)."""
    return {label: int(cp.one(f"SELECT COUNT(*) FROM {table}")[0]) for table, label in HOLDINGS}  # noqa: S608


def is_demo_control_plane(cp: ControlPlane) -> bool:
    """Whether the fixtures made this control plane: the first entry of its audit log is their mark."""
    row = cp.one("SELECT action FROM audit_log ORDER BY seq LIMIT 1")
    return row is not None and row[0] == DEMO_MARK


def require_demo_control_plane(cp: ControlPlane) -> None:
    """DemoLedgerError unless ``cp`` is empty or a demo control plane (its ledger holding no real requests)."""
    ledger.require_demo_ledger(cp)
    if is_demo_control_plane(cp):
        return
    held = [f"{n} {label}" for label, n in holdings(cp).items() if n]
    if held:
        raise ledger.DemoLedgerError(
            f"the control plane {mask_url(cp.url)} is not a demo control plane: it holds {', '.join(held)}; demo "
            "requests go only to a new, empty control plane or one made by 'ccpipe transparency fixtures' (omit "
            "--control_plane for OUTPUT/_demo/control.db)"
        )


def claim_demo_control_plane(cp: ControlPlane, actor: audit.Actor, root: str | Path) -> None:
    """Make ``cp`` the demo's own: mark an empty one (its first audit entry); accept one marked before.

    DemoLedgerError, having written nothing, when it holds anything else (``require_demo_control_plane``).
    """
    with cp.transaction():
        require_demo_control_plane(cp)
        if not is_demo_control_plane(cp):
            audit.append(cp, actor, DEMO_MARK, reason="demo control plane of 'ccpipe transparency fixtures': "
                         "made-up government requests only", details={"output": str(root)})


def require_audit_control_plane(cp: ControlPlane, audit_cp: ControlPlane) -> None:
    """DemoLedgerError unless ``audit_cp`` can hold the production trace of the demo's disclosures.

    Not the demo control plane itself, nor any demo control plane: they can be deleted with the demo.
    """
    if audit_cp is cp or audit_cp.url == cp.url:
        raise ledger.DemoLedgerError(
            "the demo's disclosures are audited in the production control plane, not in the demo's own"
        )
    if is_demo_control_plane(audit_cp) or ledger.entry_counts(audit_cp)[1]:
        raise ledger.DemoLedgerError(
            f"the audit control plane {mask_url(audit_cp.url)} is a demo control plane; the demo's disclosures "
            "are audited in the production one (default under $CCPIPE_HOME)"
        )


def _has_readable_subject(keys: SqliteKeyStore, root: str, tenant: object) -> bool:
    """Whether one of the tenant's calls has a calling number whose key is still held (decrypts nothing)."""
    for file in store.partition_files(root, dataset="calls", region=tenant.region):
        for row in store.read(file).to_pylist():
            if row["tenant_id"] == tenant.tenant_id and row["calling_number_ciphertext"]:
                try:
                    keys.get(tenant.tenant_id, "content", row["key_version"])
                except KeyUnavailableError:
                    continue  # its key was destroyed: shredded data is no demo subject
                return True
    return False


def _subject_phone(keys: SqliteKeyStore, root: str, tenant: object) -> str | None:
    """A calling number of one of the tenant's calls that can still be read (crypto-shredded ones are skipped).

    Decrypts customer data: call it only under a production audit intent.
    """
    for file in store.partition_files(root, dataset="calls", region=tenant.region):
        for row in store.read(file).to_pylist():
            if row["tenant_id"] == tenant.tenant_id and row["calling_number_ciphertext"]:
                try:
                    key = keys.get(tenant.tenant_id, "content", row["key_version"])
                except KeyUnavailableError:
                    continue  # its key was destroyed: shredded data is no demo subject
                aad = crypto.field_aad(tenant.tenant_id, file.region, "calls", row["record_id"], "calling_number")
                return crypto.decrypt(key, row["calling_number_ciphertext"], aad).decode()
    return None


def generate(
    cp: ControlPlane,
    keys: SqliteKeyStore,
    root: str,
    *,
    seed: int,
    count: int,
    actor: audit.Actor,
    audit_cp: ControlPlane,
) -> list[str]:
    """Add ``count`` demo requests, carried through authority check, decision, notification and closing.

    DemoLedgerError, before anything is written, when the ledger holds real requests or ``audit_cp``
    is no production control plane (``require_audit_control_plane``). Bundles go to
    ``bundles_dir(root)``, each with a random passphrase in a 0600 ``<id>.passphrase`` file beside it.
    Each disclosure decrypts real data: ``audit_cp``'s audit log records a ``demo_disclosure`` intent
    before it and the outcome after; when the intent cannot be written, nothing is decrypted.
    """
    ledger.require_demo_ledger(cp)
    require_audit_control_plane(cp, audit_cp)
    rng = random.Random(seed)
    tenants = [t for t in tenants_repo.load(cp).values() if _has_readable_subject(keys, root, t)]
    if not tenants:
        raise ConfigError(
            f"output root {root!r} holds no call records of the control plane's tenants: run the batch pipeline "
            "first, and give the demo control plane that run's tenants registry"
        )
    private_dir(demo_dir(root))
    bundles = private_dir(bundles_dir(root))
    ids = []
    for _ in range(count):
        agency, country = rng.choice(AGENCIES)
        rtype = rng.choices(TYPES, TYPE_WEIGHTS)[0]
        if rtype == "national_security":
            agency, country = AGENCIES[0]  # NSLs and FISA orders: US process
        tenant = rng.choice(tenants)
        offset = _dt.timezone(_dt.timedelta(hours=rng.choice([-8, -5, -3, 0, 1, 2, 8, 10])))
        received = (START + _dt.timedelta(seconds=rng.randrange(SPAN_DAYS * 86400))).astimezone(offset)
        emergency = rtype == "emergency"
        categories = sorted(rng.sample(ledger.CATEGORIES, rng.randint(1, 2)))
        rid = ledger.add(
            cp,
            actor,
            agency=agency,
            country=country,
            request_type=rtype,
            tenant_ids=[tenant.tenant_id],
            categories=categories,
            scope=f"records of one subscriber, {rng.randint(1, 12)} months",
            received_at=received,
            emergency=emergency,
            emergency_justification="credible threat to life reported by the agency" if emergency else None,
            demo=True,
        )
        ids.append(rid)
        if rng.random() < 0.08:
            continue  # still open: awaiting review
        us_content = country == "US" and "customer_content" in categories and rtype not in ledger.US_CONTENT_INSTRUMENTS
        valid = (not us_content) and rtype != "other" and rng.random() < 0.75
        ledger.check_authority(cp, actor, rid, valid, "reviewed by legal: instrument and jurisdiction")
        if emergency or (valid and rng.random() < 0.6):
            decision = "narrowed" if (not emergency and rng.random() < 0.4) else "disclosed"
            export = _disclose(cp, audit_cp, keys, root, actor, rid, tenant, bundles / f"{rid}.bin")
            ledger.decide(
                cp,
                actor,
                rid,
                decision,
                disclosure_request_ids=[export],
                scope_disclosed="subscriber and call records, 3 months" if decision == "narrowed" else None,
            )
        else:
            ledger.decide(cp, actor, rid, "redirected_to_customer" if valid else "rejected")
        if not emergency and rng.random() < 0.25:
            ledger.notify(
                cp,
                actor,
                rid,
                prohibited=True,
                basis="non-disclosure order of the issuing court",
                challenged=rng.random() < 0.5,
            )
        else:
            days = rng.randint(1, 12) if emergency else rng.randint(0, 20)
            ledger.notify(cp, actor, rid, notified_at=received + _dt.timedelta(days=days))
        if rng.random() < 0.9:
            ledger.close(cp, actor, rid)
    return ids


def _disclose(
    cp: ControlPlane,
    audit_cp: ControlPlane,
    keys: SqliteKeyStore,
    root: str,
    actor: audit.Actor,
    rid: str,
    tenant: Tenant,
    bundle: Path,
) -> str:
    """One real disclosure for demo request ``rid``, its intent and outcome in the production audit log."""
    trace = {"bundle": str(bundle), "demo_control_plane": mask_url(cp.url), "subject_kind": "phone"}
    tenant_id = tenant.tenant_id
    with audit.intent(audit_cp, actor, DISCLOSURE_ACTION, tenant_id=tenant_id, target=rid, reason=DISCLOSURE_REASON,
                      details=trace) as intent_seq:
        passphrase = secrets.token_urlsafe(24)
        write_secret(bundle.with_suffix(".passphrase"), passphrase)
        export = ledger.disclose(
            cp, keys, root, actor, rid, tenant_id, "phone", _subject_phone(keys, root, tenant), str(bundle), passphrase
        )
        audit.append(audit_cp, actor, DISCLOSURE_ACTION, tenant_id=tenant_id, target=rid, reason=DISCLOSURE_REASON,
                     details={**trace, "intent": intent_seq, "export": export})
    return export
