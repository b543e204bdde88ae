"""The tenants registry: load it from YAML or JSON and decide where a record may go.

A registry file holds a list of tenants, or an object whose ``tenants`` key holds it (SPEC §1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ccpipe.errors import ConfigError, RecordError
from ccpipe.schemas import parse_rfc3339
from ccpipe.types import Tenant

STATUSES = ("active", "terminated")


def tenant_from_dict(item: dict[str, Any], where: str) -> Tenant:
    """Build and validate one tenant; errors name the entry and the field."""
    for name in ("tenant_id", "region"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ConfigError(f"{where}: field {name!r} must be a non-empty string")
    status = item.get("status", "active")
    if status not in STATUSES:
        raise ConfigError(f"{where}: status {status!r} is not one of {STATUSES}")
    terminated_at = item.get("terminated_at")
    if status == "terminated":
        if not terminated_at:
            raise ConfigError(f"{where}: a terminated tenant needs terminated_at")
        try:
            parse_rfc3339(str(terminated_at))
        except ValueError:
            raise ConfigError(f"{where}: terminated_at {terminated_at!r} is not RFC 3339 with an offset") from None
    subprocessors = item.get("subprocessors") or {}
    return Tenant(
        tenant_id=item["tenant_id"],
        name=str(item.get("name", "")),
        region=item["region"].lower(),
        status=status,
        terminated_at=str(terminated_at) if terminated_at else None,
        subprocessors=tuple(sorted((str(k), bool(v)) for k, v in subprocessors.items())),
    )


def load_tenants(path: str | Path) -> dict[str, Tenant]:
    """Read a tenants registry file (``.yaml``, ``.yml`` or ``.json``) into ``tenant_id -> Tenant``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"tenants file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if isinstance(data, dict):
        data = data.get("tenants")
    if not isinstance(data, list):
        raise ConfigError(f"tenants file {str(path)!r} must hold a list of tenants or an object with 'tenants'")
    tenants: dict[str, Tenant] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: entry {i} must be an object")
        tenant = tenant_from_dict(item, f"{path}: entry {i}")
        if tenant.tenant_id in tenants:
            raise ConfigError(f"{path}: tenant_id {tenant.tenant_id!r} appears twice")
        tenants[tenant.tenant_id] = tenant
    return tenants


def check_tenant(tenant: Tenant | None, event_time: str, sink_regions: frozenset[str]) -> str:
    """The region a record may be written to; RecordError with the dead-letter reason otherwise."""
    if tenant is None:
        raise RecordError("unknown_tenant", "tenant_id is not in the tenants registry")
    if tenant.region not in sink_regions:
        raise RecordError("no_sink_for_region", f"region {tenant.region!r} has no configured sink")
    if tenant.status == "terminated" and tenant.terminated_at:
        if parse_rfc3339(event_time) > parse_rfc3339(tenant.terminated_at):
            raise RecordError("tenant_terminated", "event time is after the tenant's termination")
    return tenant.region
