"""A realistic, deterministic government-request ledger, made through the ledger's own rules.

Disclosures are real: each is a scoped, encrypted export of one subject's data from a pipeline
output root (``--output``), so the generated ledger also exercises the disclosure path.
"""

from __future__ import annotations

import datetime as _dt
import random
from pathlib import Path

from ccpipe import crypto, store
from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.db import ControlPlane
from ccpipe.keystore import SqliteKeyStore
from ccpipe.transparency import ledger

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


def _subject_phone(keys: SqliteKeyStore, root: str, tenant: object) -> str | None:
    for file in store.partition_files(root, dataset="calls", region=tenant.region):
        for row in store.read(file).to_pylist():
            if row["tenant_id"] == tenant.tenant_id and row["calling_number_ciphertext"]:
                key = keys.get(tenant.tenant_id, "content", row["key_version"])
                aad = crypto.field_aad(tenant.tenant_id, file.region, "calls", row["record_id"], "calling_number")
                return crypto.decrypt(key, row["calling_number_ciphertext"], aad).decode()
    return None


def generate(
    cp: ControlPlane, keys: SqliteKeyStore, root: str, bundles: Path, seed: int, count: int, actor: audit.Actor
) -> list[str]:
    """Add ``count`` requests, carried through authority check, decision, notification and closing."""
    rng = random.Random(seed)
    tenants = [t for t in tenants_repo.load(cp).values() if _subject_phone(keys, root, t)]
    if not tenants:
        raise ValueError("no tenant with call records under the output root: run the batch pipeline first")
    bundles.mkdir(parents=True, exist_ok=True)
    ids = []
    for n in range(count):
        agency, country = rng.choice(AGENCIES)
        rtype = rng.choices(TYPES, TYPE_WEIGHTS)[0]
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
        )
        ids.append(rid)
        if rng.random() < 0.08:
            continue  # still open: awaiting review
        us_content = country == "US" and "customer_content" in categories and rtype not in ledger.US_CONTENT_INSTRUMENTS
        valid = (not us_content) and rtype != "other" and rng.random() < 0.75
        ledger.check_authority(cp, actor, rid, valid, "reviewed by legal: instrument and jurisdiction")
        if emergency or (valid and rng.random() < 0.6):
            decision = "narrowed" if (not emergency and rng.random() < 0.4) else "disclosed"
            export = ledger.disclose(
                cp,
                keys,
                root,
                actor,
                rid,
                tenant.tenant_id,
                "phone",
                _subject_phone(keys, root, tenant),
                str(bundles / f"{rid}.bin"),
                f"fixture passphrase {seed}-{n}",
            )
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
