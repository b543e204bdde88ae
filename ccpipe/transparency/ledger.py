"""The ledger of government requests for customer data, and the rules the provider follows.

Rules enforced here (each refusal raises LedgerRuleError before anything is written):

* no disclosure (``disclosed`` or ``narrowed``) without a recorded, valid legal authority, unless it
  is an emergency exception with a written justification;
* in the United States, customer content is disclosed only under a search warrant or a court order;
* a narrowed disclosure states the narrower scope it disclosed;
* a disclosure goes through the data-subject export path (a completed, encrypted, audited export
  request of one of the request's tenants), never as raw files;
* a request is closed only once the customer was notified or a legal prohibition was recorded (and
  whether it was challenged); an emergency disclosure must be followed by a notification, and one
  later than ``PROMPT_DAYS`` days is flagged in the report.

Every change is audited. Times are stored as given (with their offset) and in UTC; periods are
counted in UTC.

Made-up requests (``ccpipe transparency fixtures``) are stored with ``demo`` set. A ledger holds
either real requests or demo ones, never both: adding a demo request to a ledger that holds real
ones, or a real request to a ledger that holds demo ones, is refused (``DemoLedgerError``).
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from ccpipe.controlplane import audit, tenants_repo
from ccpipe.controlplane.db import ControlPlane
from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.schemas import parse_rfc3339

REQUEST_TYPES = ("search_warrant", "court_order", "subpoena", "emergency", "national_security", "other")
DECISIONS = ("rejected", "narrowed", "disclosed", "redirected_to_customer")
CATEGORIES = ("admin_registration", "user_registration", "telemetry", "customer_content")
DISCLOSING = ("disclosed", "narrowed")
PROMPT_DAYS = 7
US_CONTENT_INSTRUMENTS = ("search_warrant", "court_order")


class LedgerRuleError(CcpipeError):
    """A step would break one of the ledger's rules; nothing was recorded."""


class DemoLedgerError(LedgerRuleError):
    """Demo (made-up) and real requests would be mixed in one ledger; nothing was recorded."""


@dataclass(frozen=True)
class GovRequest:
    """One ledger entry."""

    request_id: str
    agency: str
    country: str
    request_type: str
    tenant_ids: tuple[str, ...]
    categories: tuple[str, ...]
    scope_requested: str
    received_at: str
    received_utc: str
    authority_valid: bool | None
    emergency: bool
    emergency_justification: str | None
    decision: str | None
    decided_at: str | None
    scope_disclosed: str | None
    disclosure_request_ids: tuple[str, ...]
    notified_at: str | None
    notification_prohibited: bool
    prohibition_basis: str | None
    prohibition_challenged: bool
    status: str
    demo: bool = False


_COLUMNS = (
    "request_id, agency, country, request_type, tenant_ids, categories, scope_requested, received_at, received_utc, "
    "authority_valid, emergency, emergency_justification, decision, decided_at, scope_disclosed, "
    "disclosure_request_ids, notified_at, notification_prohibited, prohibition_basis, prohibition_challenged, status, "
    "demo"
)


def _from_row(r: tuple) -> GovRequest:
    return GovRequest(
        r[0],
        r[1],
        r[2],
        r[3],
        tuple(json.loads(r[4])),
        tuple(json.loads(r[5])),
        r[6],
        r[7],
        r[8],
        None if r[9] is None else bool(r[9]),
        bool(r[10]),
        r[11],
        r[12],
        r[13],
        r[14],
        tuple(json.loads(r[15])),
        r[16],
        bool(r[17]),
        r[18],
        bool(r[19]),
        r[20],
        bool(r[21]),
    )


def get(cp: ControlPlane, request_id: str) -> GovRequest:
    """One entry; NotFoundError when unknown."""
    row = cp.one(f"SELECT {_COLUMNS} FROM gov_requests WHERE request_id = ?", (request_id,))
    if row is None:
        raise tenants_repo.NotFoundError(f"unknown government request {request_id!r}")
    return _from_row(row)


def list_all(cp: ControlPlane) -> list[GovRequest]:
    """Every entry, by receipt time (UTC)."""
    return [_from_row(r) for r in cp.query(f"SELECT {_COLUMNS} FROM gov_requests ORDER BY received_utc, request_id")]


def entry_counts(cp: ControlPlane) -> tuple[int, int]:
    """How many real and how many demo requests the ledger holds."""
    rows = dict(cp.query("SELECT demo, COUNT(*) FROM gov_requests GROUP BY demo"))
    return int(rows.get(0, 0)), int(rows.get(1, 0))


def require_demo_ledger(cp: ControlPlane) -> None:
    """DemoLedgerError unless the ledger is empty or holds demo requests only."""
    real, _ = entry_counts(cp)
    if real:
        raise DemoLedgerError(
            f"the control plane's ledger holds {real} real (non-demo) government requests; demo requests go "
            "only to an empty or demo control plane (default OUTPUT/_demo/control.db)"
        )


def _require_same_kind(cp: ControlPlane, demo: bool) -> None:
    if demo:
        require_demo_ledger(cp)
        return
    made_up = entry_counts(cp)[1]
    if made_up:
        raise DemoLedgerError(
            f"the control plane's ledger holds {made_up} demo government requests (made up by "
            "'ccpipe transparency fixtures'); record real requests in the production control plane"
        )


def _timestamp(value: str | _dt.datetime | None, name: str) -> tuple[str, str]:
    if value is None:
        moment = _dt.datetime.now(_dt.UTC)
    elif isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{name} must carry a time zone")
        moment = value
    else:
        try:
            moment = parse_rfc3339(value)
        except ValueError:
            raise ConfigError(f"{name} {value!r} must be RFC 3339 with an offset") from None
    return moment.isoformat(), moment.astimezone(_dt.UTC).isoformat()


def add(
    cp: ControlPlane,
    actor: audit.Actor,
    *,
    agency: str,
    country: str,
    request_type: str,
    tenant_ids: list[str],
    categories: list[str],
    scope: str,
    received_at: str | _dt.datetime,
    emergency: bool = False,
    emergency_justification: str | None = None,
    demo: bool = False,
) -> str:
    """Record a newly received request; returns its id. ``demo``: a made-up request (fixtures)."""
    if actor.role != "operator":
        raise LedgerRuleError("only operators maintain the government request ledger")
    if not agency.strip() or not scope.strip():
        raise ConfigError("agency and scope must not be empty")
    if len(country) != 2 or not country.isalpha():
        raise ConfigError(f"country {country!r} must be an ISO 3166 alpha-2 code")
    if request_type not in REQUEST_TYPES:
        raise ConfigError(f"request type {request_type!r} is not one of {REQUEST_TYPES}")
    if not tenant_ids:
        raise ConfigError("a request concerns at least one tenant")
    unknown = sorted(set(categories) - set(CATEGORIES))
    if not categories or unknown:
        raise ConfigError(f"categories must be some of {CATEGORIES}, got {categories!r}")
    emergency = emergency or request_type == "emergency"
    if emergency and not (emergency_justification or "").strip():
        raise LedgerRuleError("an emergency request needs a justification (imminent death or serious physical harm)")
    for tenant_id in tenant_ids:
        tenants_repo.get(cp, tenant_id)
    local, utc = _timestamp(received_at, "received_at")
    request_id = "gr-" + uuid.uuid4().hex[:12]
    with cp.transaction():
        _require_same_kind(cp, demo)
        cp.execute(
            "INSERT INTO gov_requests (request_id, agency, country, request_type, tenant_ids, categories, "
            "scope_requested, received_at, received_utc, emergency, emergency_justification, status, demo) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            (
                request_id,
                agency,
                country.upper(),
                request_type,
                json.dumps(sorted(tenant_ids)),
                json.dumps(sorted(categories)),
                scope,
                local,
                utc,
                int(emergency),
                emergency_justification,
                int(demo),
            ),
        )
        audit.append(
            cp,
            actor,
            "gov_request_add",
            target=request_id,
            details={"type": request_type, "country": country.upper(), "emergency": emergency, "demo": demo},
        )
    return request_id


def _update(
    cp: ControlPlane,
    actor: audit.Actor,
    request_id: str,
    changes: dict[str, Any],
    action: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Change one entry and audit the change, together or not at all."""
    assignments = ", ".join(f"{column} = ?" for column in changes)
    with cp.transaction():
        cp.execute(f"UPDATE gov_requests SET {assignments} WHERE request_id = ?", (*changes.values(), request_id))
        audit.append(cp, actor, action, target=request_id, details=details)


def _require_authority(request: GovRequest) -> None:
    if request.authority_valid is not True and not request.emergency:
        raise LedgerRuleError(f"{request.request_id}: no disclosure without a recorded valid legal authority")


def _open(cp: ControlPlane, request_id: str) -> GovRequest:
    request = get(cp, request_id)
    if request.status == "closed":
        raise LedgerRuleError(f"{request_id} is closed; a closed request cannot change")
    return request


def check_authority(cp: ControlPlane, actor: audit.Actor, request_id: str, valid: bool, notes: str) -> None:
    """Record the legal review: whether the instrument is valid authority to require this data."""
    request = _open(cp, request_id)
    if not notes.strip():
        raise ConfigError("record what was reviewed (court, docket, statute)")
    if (
        valid
        and request.country == "US"
        and "customer_content" in request.categories
        and request.request_type not in US_CONTENT_INSTRUMENTS
    ):
        raise LedgerRuleError(
            f"in the US customer content needs a search warrant or court order, not a {request.request_type}"
        )
    _update(
        cp,
        actor,
        request_id,
        {
            "authority_valid": int(valid),
            "authority_checked_by": actor.name,
            "authority_checked_at": _dt.datetime.now(_dt.UTC).isoformat(),
            "authority_notes": notes,
        },
        "gov_request_authority",
        {"valid": valid},
    )


def decide(
    cp: ControlPlane,
    actor: audit.Actor,
    request_id: str,
    decision: str,
    *,
    scope_disclosed: str | None = None,
    disclosure_request_ids: list[str] | None = None,
) -> None:
    """Record the decision; a disclosure must meet the rules above."""
    request = _open(cp, request_id)
    if decision not in DECISIONS:
        raise ConfigError(f"decision {decision!r} is not one of {DECISIONS}")
    if request.decision is not None:
        raise LedgerRuleError(f"{request_id} was already decided ({request.decision})")
    disclosures = list(disclosure_request_ids or [])
    if decision in DISCLOSING:
        _require_authority(request)
        if not disclosures:
            raise LedgerRuleError(f"{request_id}: a disclosure goes through a data-subject export; name its request id")
        for dsar_id in disclosures:
            row = cp.one("SELECT tenant_id, kind, status FROM dsar_requests WHERE request_id = ?", (dsar_id,))
            if row is None or row[1] != "export" or row[2] != "completed":
                raise LedgerRuleError(f"{dsar_id} is not a completed export request")
            if row[0] not in request.tenant_ids:
                raise LedgerRuleError(f"export {dsar_id} belongs to tenant {row[0]}, outside this request")
        if decision == "narrowed" and not (scope_disclosed or "").strip():
            raise LedgerRuleError(f"{request_id}: a narrowed disclosure states the scope actually disclosed")
        scope_disclosed = scope_disclosed or request.scope_requested
    elif disclosures or scope_disclosed:
        raise LedgerRuleError(f"{request_id}: a {decision} request discloses nothing")
    _update(
        cp,
        actor,
        request_id,
        {
            "decision": decision,
            "decided_by": actor.name,
            "decided_at": _dt.datetime.now(_dt.UTC).isoformat(),
            "scope_disclosed": scope_disclosed,
            "disclosure_request_ids": json.dumps(disclosures),
        },
        "gov_request_decide",
        {"decision": decision, "disclosures": disclosures},
    )


def notify(
    cp: ControlPlane,
    actor: audit.Actor,
    request_id: str,
    *,
    notified_at: str | _dt.datetime | None = None,
    prohibited: bool = False,
    basis: str | None = None,
    challenged: bool = False,
) -> None:
    """Record the customer notification, or the legal prohibition that prevents it."""
    request = _open(cp, request_id)
    if prohibited:
        if not (basis or "").strip():
            raise LedgerRuleError("a notification prohibition needs its legal basis (order, statute)")
        if request.emergency and request.decision in DISCLOSING:
            raise LedgerRuleError("an emergency disclosure must be notified to the customer promptly")
        changes = {
            "notified_at": None,
            "notification_prohibited": 1,
            "prohibition_basis": basis,
            "prohibition_challenged": int(challenged),
        }
    else:
        changes = {
            "notified_at": _timestamp(notified_at, "notified_at")[1],
            "notification_prohibited": 0,
            "prohibition_basis": None,
            "prohibition_challenged": 0,
        }
    _update(cp, actor, request_id, changes, "gov_request_notify", {"prohibited": prohibited, "challenged": challenged})


def close(cp: ControlPlane, actor: audit.Actor, request_id: str) -> None:
    """Close a decided request whose customer was notified or whose notification is prohibited."""
    request = _open(cp, request_id)
    if request.decision is None:
        raise LedgerRuleError(f"{request_id} has no decision yet")
    if request.notified_at is None and not request.notification_prohibited:
        raise LedgerRuleError(f"{request_id}: notify the customer, or record the legal prohibition, before closing")
    _update(
        cp,
        actor,
        request_id,
        {"status": "closed", "closed_at": _dt.datetime.now(_dt.UTC).isoformat()},
        "gov_request_close",
    )


def notified_promptly(request: GovRequest) -> bool | None:
    """For an emergency disclosure, whether the customer was notified within PROMPT_DAYS of receipt."""
    if not (request.emergency and request.decision in DISCLOSING):
        return None
    if request.notified_at is None:
        return False
    delay = _dt.datetime.fromisoformat(request.notified_at) - _dt.datetime.fromisoformat(request.received_utc)
    return delay <= _dt.timedelta(days=PROMPT_DAYS)


def disclose(
    cp: ControlPlane,
    keys: Any,
    root: str,
    actor: audit.Actor,
    request_id: str,
    tenant_id: str,
    subject_kind: str,
    subject_value: str,
    out: str,
    passphrase: str,
) -> str:
    """Produce a scoped disclosure through the data-subject export path; returns the export's request id.

    Refused unless the legal authority is recorded as valid (or it is an emergency exception). The
    export is one subject's data, encrypted under a passphrase handed to the agency separately.
    """
    from ccpipe.controlplane import dsar

    request = _open(cp, request_id)
    _require_authority(request)
    if tenant_id not in request.tenant_ids:
        raise LedgerRuleError(f"tenant {tenant_id} is outside request {request_id}")
    basis = f"legal authority of government request {request_id}" + (" (emergency)" if request.emergency else "")
    export_id = dsar.open_authorized(cp, keys, actor, tenant_id, "export", subject_kind, subject_value, basis)
    dsar.execute(cp, keys, root, actor, export_id, out=out, passphrase=passphrase, authority=basis)
    return export_id
