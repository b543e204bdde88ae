"""The semiannual transparency report: ``ccpipe transparency report --period 2026H1 --provider NAME``.

Periods are January-June (``H1``) and July-December (``H2``), counted in UTC. A period's report
is published no earlier than six months after the period ends (2026H1 on 2027-01-01); before
that only a draft (``--draft``, marked as such) can be produced. The report holds counts only:
no subject, tenant or agency officer appears in it. Every format (HTML, CSV, JSON) names the
provider, the generation time (UTC) and the period.

National-security requests (US National Security Letters and FISA orders and directives, recorded
as ``national_security``) are published only as a band, under 50 U.S.C. § 1874(a)(3): all national
security process combined, semiannually, in bands of 250 starting with 0–249 (and the customer
accounts targeted, in the same bands). They are never counted exactly and are left out of every
other figure (totals, types, countries, data categories, decisions, notifications, emergencies), so
no exact count can be derived from the report. The band is always shown, also when it is 0–249.
A ledger holding demo (made-up) requests yields a report marked DEMO in every format.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ccpipe.errors import CcpipeError, ConfigError
from ccpipe.transparency.ledger import CATEGORIES, DISCLOSING, REQUEST_TYPES, GovRequest, notified_promptly

EMBARGO_MONTHS = 6
NATIONAL_SECURITY = "national_security"
NS_BAND = 250
NS_OPTION = "50 U.S.C. § 1874(a)(3)"
CONTENT, NON_CONTENT = "customer_content", "non_content"
PROVIDER_MAX = 200

DEFINITIONS = {
    "Provider": "The service provider that received the requests and publishes this report.",
    "Generated": "When this report was produced (UTC).",
    "Requests received": "Government requests for customer data received in the period (by receipt time, UTC), "
    "national-security requests excluded (see National security requests).",
    "Request type": "Legal instrument: search warrant, court order, subpoena, emergency, other. National-security "
    "process is not counted by type.",
    "Data category": "Customer content: requests that asked for customer content (call recordings and transcripts, "
    "chat transcripts, notes). Non-content: requests that asked only for other data (administrator and user "
    "registration data, telemetry and call information). Each request counts once, so the two add up to the "
    "requests received; 'requested' counts each category a request asked for (a request may ask for several).",
    "Data disclosed": "Requests answered with some customer data (disclosed in full, or narrowed to less than asked).",
    "No data disclosed": "Requests rejected, redirected to the customer, or not yet decided at the end of the period.",
    "Narrowed": "Data disclosed only after the request was narrowed to the information strictly required.",
    "Redirected to customer": "The agency was directed to obtain the data from the customer itself.",
    "Customer notified": "The customer was told its data was requested.",
    "Notification prohibited": "A court order or statute forbade telling the customer; 'challenged' counts the "
    "prohibitions the provider contested.",
    "Emergency exceptions": "Disclosures without prior legal process to prevent imminent death or serious physical "
    "harm; each is notified to the customer promptly (within 7 days) and reported here.",
    "National security requests": f"US National Security Letters and orders or directives under the Foreign "
    f"Intelligence Surveillance Act (FISA), reported as the law permits under the reporting option of {NS_OPTION}: "
    f"all national security process combined (NSLs and FISA together), semiannually, in bands of {NS_BAND} starting "
    f"with 0–{NS_BAND - 1}, together with the customer accounts targeted, in the same bands. Exact numbers are never "
    "published, and these requests are left out of every other figure in this report (totals, types, countries, "
    "data categories, decisions, notifications and emergency exceptions), so that no exact count can be derived. "
    "The report is published no earlier than six months after its period ends.",
}


def band(n: int, size: int = NS_BAND) -> str:
    """The reporting band holding ``n``: ``0–249``, ``250–499``, ... (en dash)."""
    if n < 0:
        raise ValueError(f"a count cannot be negative: {n}")
    low = n // size * size
    return f"{low}–{low + size - 1}"


def validate_provider(name: str | None) -> str:
    """The provider's name, stripped; ConfigError unless it is a plain one-line name."""
    value = (name or "").strip()
    if (
        not value
        or len(value) > PROVIDER_MAX
        or not value.isprintable()
        or value[0] in "=+-@"
    ):
        raise ConfigError(
            f"provider {name!r} must be a non-empty name of at most {PROVIDER_MAX} printable characters on one line, "
            "not starting with = + - @ (spreadsheet formulas)"
        )
    return value


def _utc(moment: _dt.datetime | None) -> _dt.datetime:
    if moment is None:
        return _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    if moment.tzinfo is None:
        raise ConfigError(f"generated_at {moment.isoformat()!r} must carry a time zone")
    return moment.astimezone(_dt.UTC).replace(microsecond=0)


class EmbargoError(CcpipeError):
    """The period may not be published yet."""


@dataclass(frozen=True)
class Period:
    """A half year in UTC: [start, end)."""

    label: str
    start: _dt.datetime
    end: _dt.datetime

    @classmethod
    def parse(cls, label: str) -> Period:
        """``2026H1`` or ``2026H2``."""
        m = re.fullmatch(r"(\d{4})H([12])", label.strip().upper())
        if not m:
            raise ConfigError(f"period {label!r} must look like 2026H1 or 2026H2")
        year, half = int(m.group(1)), int(m.group(2))
        start = _dt.datetime(year, 1 if half == 1 else 7, 1, tzinfo=_dt.UTC)
        end = _dt.datetime(year, 7, 1, tzinfo=_dt.UTC) if half == 1 else _dt.datetime(year + 1, 1, 1, tzinfo=_dt.UTC)
        return cls(f"{year}H{half}", start, end)

    @property
    def publishable_from(self) -> _dt.datetime:
        """Six months after the period ends."""
        month = self.end.month + EMBARGO_MONTHS
        return self.end.replace(year=self.end.year + (month - 1) // 12, month=(month - 1) % 12 + 1)

    def contains(self, utc_iso: str) -> bool:
        """Whether a UTC timestamp falls in the period."""
        return self.start <= _dt.datetime.fromisoformat(utc_iso) < self.end


def build(
    requests: list[GovRequest],
    period: Period,
    as_of: _dt.datetime,
    draft: bool,
    *,
    provider: str,
    generated_at: _dt.datetime | None = None,
) -> dict[str, Any]:
    """The report's figures; EmbargoError when the period is not publishable and this is no draft.

    National-security requests appear only as bands (``national_security``) and in no other figure.
    ``generated_at``: when the report is produced (default now), shown in UTC.
    """
    provider = validate_provider(provider)
    generated = _utc(generated_at)
    if not draft and as_of < period.publishable_from:
        raise EmbargoError(
            f"{period.label} may be published from {period.publishable_from.date()} (six months after it ends); "
            "use --draft for an internal draft"
        )
    in_period = [r for r in requests if period.contains(r.received_utc)]
    ns = [r for r in in_period if r.request_type == NATIONAL_SECURITY]
    rs = [r for r in in_period if r.request_type != NATIONAL_SECURITY]
    decisions = Counter(r.decision or "pending" for r in rs)
    emergencies = [r for r in rs if r.emergency and r.decision in DISCLOSING]

    def kind(r: GovRequest) -> str:
        return CONTENT if CONTENT in r.categories else NON_CONTENT

    return {
        "provider": provider,
        "generated_at": generated.isoformat().replace("+00:00", "Z"),
        "period": period.label,
        "from": period.start.date().isoformat(),
        "to": (period.end - _dt.timedelta(days=1)).date().isoformat(),
        "draft": draft,
        "demo": any(r.demo for r in requests),
        "requests_received": len(rs),
        "by_type": {t: sum(r.request_type == t for r in rs) for t in REQUEST_TYPES if t != NATIONAL_SECURITY},
        "by_country": dict(sorted(Counter(r.country for r in rs).items())),
        "by_data_category": {k: sum(kind(r) == k for r in rs) for k in (CONTENT, NON_CONTENT)},
        "data_disclosed_by_category": {
            k: sum(kind(r) == k and r.decision in DISCLOSING for r in rs) for k in (CONTENT, NON_CONTENT)
        },
        "by_category_requested": {c: sum(c in r.categories for r in rs) for c in CATEGORIES},
        "by_decision": {
            d: decisions.get(d, 0) for d in ("disclosed", "narrowed", "rejected", "redirected_to_customer", "pending")
        },
        "data_disclosed": sum(r.decision in DISCLOSING for r in rs),
        "no_data_disclosed": sum(r.decision not in DISCLOSING for r in rs),
        "customer_notified": sum(r.notified_at is not None for r in rs),
        "notification_prohibited": sum(r.notification_prohibited for r in rs),
        "prohibitions_challenged": sum(r.notification_prohibited and r.prohibition_challenged for r in rs),
        "notification_pending": sum(r.notified_at is None and not r.notification_prohibited for r in rs),
        "emergency_exceptions": len(emergencies),
        "emergency_notified_promptly": sum(bool(notified_promptly(r)) for r in emergencies),
        "emergency_not_notified_promptly": sum(not notified_promptly(r) for r in emergencies),
        "national_security": {
            "reporting_option": NS_OPTION,
            "band_size": NS_BAND,
            "requests": band(len(ns)),
            "customer_accounts_targeted": band(len({t for r in ns for t in r.tenant_ids})),
        },
        "definitions": DEFINITIONS,
    }


META = ("provider", "generated_at", "period", "from", "to", "draft", "demo")
TOTALS = (
    "requests_received",
    "data_disclosed",
    "no_data_disclosed",
    "customer_notified",
    "notification_prohibited",
    "prohibitions_challenged",
    "notification_pending",
    "emergency_exceptions",
    "emergency_notified_promptly",
    "emergency_not_notified_promptly",
)
SECTIONS = (
    "by_type",
    "by_country",
    "by_data_category",
    "data_disclosed_by_category",
    "by_category_requested",
    "by_decision",
)


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON (UTF-8; bands use an en dash)."""
    import json

    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """The report as ``section,item,value`` rows: metadata, totals, breakdowns, national-security bands."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "item", "value"])
    for key in META:
        value = report[key]
        w.writerow(["report", key, str(value).lower() if isinstance(value, bool) else value])
    for key in TOTALS:
        w.writerow(["total", key, report[key]])
    for section in SECTIONS:
        for item, n in report[section].items():
            w.writerow([section, item, n])
    for item, value in report["national_security"].items():
        w.writerow(["national_security", item, value])
    return buf.getvalue()


def _bars(title: str, data: dict[str, int], color: str) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no network)."""
    items = list(data.items()) or [("none", 0)]
    top = max([n for _, n in items] + [1])
    row, width, label_w = 26, 560, 190
    height = row * len(items) + 36
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (name, n) in enumerate(items):
        y = 28 + i * row
        w = 0 if top == 0 else round((width - label_w - 50) * n / top)
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{html.escape(name.replace("_", " "))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="16" fill="{color}"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 15}" font-size="12">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rows(items: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items)


def to_html(report: dict[str, Any]) -> str:
    """A static page: summary table, inline SVG charts, data definitions. No scripts, no network."""
    e = html.escape
    draft = '<p class="draft">DRAFT: not for publication before the embargo ends</p>' if report["draft"] else ""
    demo = (
        '<p class="draft">DEMO DATA: made-up requests generated by ccpipe transparency fixtures; '
        "not a transparency report</p>"
        if report["demo"]
        else ""
    )
    summary = _rows(
        [
            ("Requests received", report["requests_received"]),
            ("Data disclosed", report["data_disclosed"]),
            ("No data disclosed", report["no_data_disclosed"]),
            ("Customer notified", report["customer_notified"]),
            ("Notification prohibited", report["notification_prohibited"]),
            ("Prohibitions challenged", report["prohibitions_challenged"]),
            ("Emergency exceptions", report["emergency_exceptions"]),
            ("Emergency exceptions notified promptly", report["emergency_notified_promptly"]),
        ]
    )
    by_kind, disclosed = report["by_data_category"], report["data_disclosed_by_category"]
    categories = "".join(
        f"<tr><th>{e(label)}</th><td>{by_kind[key]}</td><td>{disclosed[key]}</td></tr>"
        for key, label in ((CONTENT, "Customer content"), (NON_CONTENT, "Non-content"))
    )
    ns = report["national_security"]
    national = _rows(
        [
            ("National security requests (NSLs and FISA orders and directives, combined)", ns["requests"]),
            ("Customer accounts targeted", ns["customer_accounts_targeted"]),
        ]
    )
    definitions = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in report["definitions"].items())
    charts = "".join(
        [
            _bars("Requests by type", report["by_type"], "#2f6f9f"),
            _bars("Requests by country", report["by_country"], "#4f8f4f"),
            _bars("Requests by data category", report["by_data_category"], "#2f8f8f"),
            _bars("Decisions", report["by_decision"], "#9f6f2f"),
            _bars(
                "Customer notification",
                {
                    "notified": report["customer_notified"],
                    "prohibited": report["notification_prohibited"],
                    "pending": report["notification_pending"],
                },
                "#7f4f9f",
            ),
        ]
    )
    generated = report["generated_at"].replace("T", " ").removesuffix("Z")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{e(report["provider"])}: transparency report {e(report["period"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: .3em .8em; }}
th {{ text-align: left; font-weight: normal; }} td {{ text-align: right; }}
thead th {{ font-weight: bold; }}
.draft {{ color: #b00; font-weight: bold; border: 2px solid #b00; padding: .5em; }}
svg {{ display: block; margin: 1.2em 0; }} dt {{ font-weight: bold; margin-top: .6em; }}
</style></head><body>
<h1>Government requests for customer data</h1>
<p class="provider">{e(report["provider"])}</p>
<p>Reporting period {e(report["period"])}: {e(report["from"])} to {e(report["to"])} (UTC).
Generated {e(generated)} UTC.</p>
{draft}{demo}
<table>{summary}</table>
<h2>By data category</h2>
<table><thead><tr><th>Data category</th><th>Requests</th><th>Data disclosed</th></tr></thead>{categories}</table>
<h2>National security requests</h2>
<p>Reported in bands of {ns["band_size"]} as permitted by {e(ns["reporting_option"])}; not included in any other
figure of this report.</p>
<table>{national}</table>
{charts}
<h2>Our principles</h2>
<ul><li>We notify the customer unless the law prohibits it, and challenge prohibitions where appropriate.</li>
<li>We disclose only under valid legal authority; in the US, customer content only under a warrant or court order.</li>
<li>We narrow requests to the information strictly required, and direct agencies to the customer first.</li>
<li>Emergency exceptions (imminent death or serious physical harm) are notified promptly and reported here.</li></ul>
<h2>Data definitions</h2><dl>{definitions}</dl>
</body></html>
"""
