"""A realistic, deterministic demo ledger of government requests, made through the ledger's own rules.

Demo data stays demo data. The requests are made up, so they go to their own control plane (by
default ``<output>/_demo/control.db``), are stored with the ledger's ``demo`` mark, and are refused
by a ledger that already holds real requests. Disclosures are real: each is a scoped, encrypted
export of one subject's data from a pipeline output root (``--output``), written under
``<output>/_demo/bundles/`` (folder 0700) with its random passphrase in a 0600 file beside it
(``<id>.passphrase``); passphrases are never printed or derived from the seed.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import secrets
from pathlib import Path

from ccpipe import crypto, store
from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import ConfigError, KeyUnavailableError
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
DEMO_DIR = "_demo"


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


def _subject_phone(keys: SqliteKeyStore, root: str, tenant: object) -> str | None:
    """A calling number of one of the tenant's calls that can still be read (crypto-shredded ones are skipped)."""
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
    cp: ControlPlane, keys: SqliteKeyStore, root: str, *, seed: int, count: int, actor: audit.Actor
) -> list[str]:
    """Add ``count`` demo requests, carried through authority check, decision, notification and closing.

    DemoLedgerError, before anything is written, when the ledger holds real requests. Bundles go to
    ``bundles_dir(root)``, each with a random passphrase in a 0600 ``<id>.passphrase`` file beside it.
    """
    ledger.require_demo_ledger(cp)
    rng = random.Random(seed)
    tenants = [t for t in tenants_repo.load(cp).values() if _subject_phone(keys, root, t)]
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
            passphrase = secrets.token_urlsafe(24)
            write_secret(bundles / f"{rid}.passphrase", passphrase)
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
                passphrase,
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
