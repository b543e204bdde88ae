"""Permitted flows besides the tenant's region (privacy data sheet §8; contract §3 "Permitted flows").

Each flow is off by default. A sub-processor hand-off is written only for a tenant that opted in
(the tenants registry's ``subprocessors``, changed through the control plane and audited) and only
when its sink is configured (``--subprocessor_sink NAME=URI``); the US monitoring copy only when
``--us_monitoring_sink`` is given. Rows are built from the protected output rows, so nothing in
them is in plain text: identifiers are pseudonyms, references and e-mail addresses ciphertext.

* ``transcription`` (customer content: call recordings), in the tenant's region: call id and the
  encrypted recording reference.
* ``recording_archive`` (recordings), in the tenant's region: call id, encrypted recording reference
  and its SHA-256.
* ``email_service`` (registration data), USA by design: pseudonymous user id and the encrypted
  e-mail address.
* ``us_monitoring`` (security/system telemetry), USA: ``MONITORED_EVENTS`` only, with the event,
  versions, device type, pseudonyms and the IP's /24 or /48 prefix; never customer content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccpipe.errors import ConfigError

SUBPROCESSORS: dict[str, dict[str, str]] = {
    "transcription": {"category": "customer content (call recordings)", "region": "tenant",
                      "rule": "privacy data sheet §8: optional transcription sub-processor, in the tenant's region"},
    "recording_archive": {"category": "voice recordings (references and checksums)", "region": "tenant",
                          "rule": "privacy data sheet §8: optional long-term recording storage (Calabrio), in the "
                                  "region where the customer is provisioned"},
    "email_service": {"category": "registration data (e-mail address)", "region": "us",
                      "rule": "privacy data sheet §8: registration data to the e-mail service (Amazon SES), USA"},
}
US_MONITORING = "us_monitoring"
US_MONITORING_RULE = ("privacy data sheet §4: other data may be sent to the USA for system and security "
                      "monitoring; pseudonymized, no customer content")
# Security/system telemetry events copied to US monitoring (contract §3): sign-ins and failures,
# device registration and status, software versions, errors. Call events are call information, not
# monitoring data, and stay in the region.
MONITORED_EVENTS = frozenset({"login", "login_failed", "logout", "device_registered", "device_status",
                              "software_update", "error"})
DATASETS = {name: f"handoff_{name}" for name in SUBPROCESSORS} | {US_MONITORING: US_MONITORING}
FLOW_OF_DATASET = {dataset: flow for flow, dataset in DATASETS.items()}


def crosses_region(flow: str) -> bool:
    """Whether a flow leaves the tenant's region (the e-mail service and US monitoring, by design)."""
    return flow == US_MONITORING or SUBPROCESSORS[flow]["region"] != "tenant"


def check_subprocessor_name(name: str, where: str = "subprocessors") -> str:
    """The name if it is a known sub-processor; ConfigError naming the allowed ones otherwise."""
    if name not in SUBPROCESSORS:
        raise ConfigError(f"{where}: unknown sub-processor {str(name)[:40]!r}; allowed: {sorted(SUBPROCESSORS)}")
    return name


@dataclass(frozen=True)
class FlowConfig:
    """Which flows have a sink: ``(sub-processor, root)`` pairs and the US monitoring root."""

    subprocessor_sinks: tuple[tuple[str, str], ...] = ()
    us_monitoring_sink: str = ""

    def __post_init__(self) -> None:
        names = [n for n, _ in self.subprocessor_sinks]
        for name, root in self.subprocessor_sinks:
            check_subprocessor_name(name, "subprocessor_sink")
            if not root:
                raise ConfigError(f"subprocessor_sink {name}= needs a root URI")
        if len(set(names)) != len(names):
            raise ConfigError(f"subprocessor_sink names a sub-processor twice: {sorted(names)}")

    @property
    def enabled(self) -> bool:
        """Whether any flow has a sink."""
        return bool(self.subprocessor_sinks or self.us_monitoring_sink)

    def root(self, flow: str) -> str:
        """The sink root of a flow ('' when not configured)."""
        if flow == US_MONITORING:
            return self.us_monitoring_sink
        return dict(self.subprocessor_sinks).get(flow, "")


def flow_rows(dataset: str, values: dict[str, Any], tenant_region: str, opted_in: frozenset[str],
              config: FlowConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """The (flow, region, row) hand-offs of one protected output row; [] for most rows.

    ``values`` is the row as written to the tenant's region (pseudonyms and ciphertext only).
    """
    out: list[tuple[str, str, dict[str, Any]]] = []
    base = {"tenant_id": values["tenant_id"], "record_id": values["record_id"], "event_time": values.get("event_time"),
            "tenant_region": tenant_region}
    if dataset == "calls" and values.get("recording_uri_ciphertext") is not None:
        reference = {"call_id": values.get("call_id"), "recording_uri_ciphertext": values["recording_uri_ciphertext"],
                     "key_version": values.get("key_version")}
        if "transcription" in opted_in and config.root("transcription"):
            out.append(("transcription", tenant_region, {**base, **reference}))
        if "recording_archive" in opted_in and config.root("recording_archive"):
            out.append(("recording_archive", tenant_region,
                        {**base, **reference, "recording_sha256": values.get("recording_sha256")}))
    elif dataset == "registrations" and values.get("email_ciphertext") is not None:
        if "email_service" in opted_in and config.root("email_service"):
            out.append(("email_service", "us", {**base, "user_pseudonym": values.get("username_pseudonym")
                                                 or values.get("email_pseudonym"),
                                                 "email_ciphertext": values["email_ciphertext"],
                                                 "key_version": values.get("key_version")}))
    elif dataset == "telemetry" and values.get("event") in MONITORED_EVENTS and config.us_monitoring_sink:
        out.append((US_MONITORING, "us", {
            **base, "event": values.get("event"), "agent_id_pseudonym": values.get("agent_id_pseudonym"),
            "client_version": values.get("client_version"), "device_type": values.get("device_type"),
            "software_version": values.get("software_version"),
            "mac_address_pseudonym": values.get("mac_address_pseudonym"),
            "ip_address_pseudonym": values.get("ip_address_pseudonym"), "ip_prefix": values.get("ip_prefix"),
        }))
    return out
