"""The tenants registry: load it from YAML or JSON and decide where a record may go.

A registry file holds a list of tenants, or an object whose ``tenants`` key holds it (SPEC §1).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ccpipe.errors import ConfigError, RecordError
from ccpipe.flows import check_subprocessor_name
from ccpipe.schemas import parse_rfc3339
from ccpipe.types import REGIONS, Tenant

STATUSES = ("active", "terminated")


# Tenant ids: letters, digits and . _ : - (no leading "_": ids starting with it are reserved for
# ccpipe's own key owners such as "_audit" and "_deadletter:<region>").
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """The service regions and every ISO 3166-1 alpha-2 country code, lower case."""
    from faker.providers.address import Provider

    return frozenset(REGIONS) | frozenset(code.lower() for code in Provider.alpha_2_country_codes)


def tenant_from_dict(item: dict[str, Any], where: str) -> Tenant:
    """Build and validate one tenant; errors name the entry, the field, the value and what is allowed."""
    for name in ("tenant_id", "region"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ConfigError(f"{where}: field {name!r} must be a non-empty string")
    if not _TENANT_ID.fullmatch(item["tenant_id"]):
        raise ConfigError(f"{where}: tenant_id {item['tenant_id'][:64]!r} must be 1-128 letters, digits or . _ : -, "
                          "not starting with '_' (reserved)")
    if item["region"].lower() not in known_regions():
        raise ConfigError(f"{where}: region {item['region'][:32]!r} is not a region code "
                          f"(one of {', '.join(REGIONS)}, or another ISO 3166-1 alpha-2 country code)")
    status = item.get("status", "active")
    if not isinstance(status, str) or status not in STATUSES:
        raise ConfigError(f"{where}: status {str(status)[:32]!r} is not one of {STATUSES}")
    if not isinstance(item.get("subprocessors") or {}, dict):
        raise ConfigError(f"{where}: subprocessors must be an object of name: true|false")
    for name, on in (item.get("subprocessors") or {}).items():
        check_subprocessor_name(str(name), f"{where}: subprocessors")
        if not isinstance(on, bool):
            raise ConfigError(f"{where}: subprocessors.{name} must be true or false")
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
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"tenants file {str(path)!r} is unreadable: {type(err).__name__}") from None
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
