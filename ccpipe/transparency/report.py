"""The semiannual transparency report: ``ccpipe transparency report --period 2026H1``.

Periods are January-June (``H1``) and July-December (``H2``), counted in UTC. A period's report
is published no earlier than six months after the period ends (2026H1 on 2027-01-01); before
that only a draft (``--draft``, marked as such) can be produced. The report holds counts only:
no subject, tenant or agency officer appears in it.
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
from ccpipe.transparency.ledger import DISCLOSING, REQUEST_TYPES, GovRequest, notified_promptly

EMBARGO_MONTHS = 6

DEFINITIONS = {
    "Requests received": "Government requests for customer data received in the period (by receipt time, UTC).",
    "Request type": "Legal instrument: search warrant, court order, subpoena, emergency, national security, other.",
    "Data disclosed": "Requests answered with some customer data (disclosed in full, or narrowed to less than asked).",
    "No data disclosed": "Requests rejected, redirected to the customer, or not yet decided at the end of the period.",
    "Narrowed": "Data disclosed only after the request was narrowed to the information strictly required.",
    "Redirected to customer": "The agency was directed to obtain the data from the customer itself.",
    "Customer notified": "The customer was told its data was requested.",
    "Notification prohibited": "A court order or statute forbade telling the customer; 'challenged' counts the "
    "prohibitions the provider contested.",
    "Emergency exceptions": "Disclosures without prior legal process to prevent imminent death or serious physical "
    "harm; each is notified to the customer promptly (within 7 days) and reported here.",
}


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


def build(requests: list[GovRequest], period: Period, as_of: _dt.datetime, draft: bool) -> dict[str, Any]:
    """The report's figures; EmbargoError when the period is not publishable and this is no draft."""
    if not draft and as_of < period.publishable_from:
        raise EmbargoError(
            f"{period.label} may be published from {period.publishable_from.date()} (six months after it ends); "
            "use --draft for an internal draft"
        )
    rs = [r for r in requests if period.contains(r.received_utc)]
    decisions = Counter(r.decision or "pending" for r in rs)
    emergencies = [r for r in rs if r.emergency and r.decision in DISCLOSING]
    return {
        "period": period.label,
        "from": period.start.date().isoformat(),
        "to": (period.end - _dt.timedelta(days=1)).date().isoformat(),
        "draft": draft,
        "requests_received": len(rs),
        "by_type": {t: sum(r.request_type == t for r in rs) for t in REQUEST_TYPES},
        "by_country": dict(sorted(Counter(r.country for r in rs).items())),
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
        "definitions": DEFINITIONS,
    }


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON."""
    import json

    return json.dumps(report, indent=2) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """The report as ``section,item,count`` rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "item", "count"])
    for key in (
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
    ):
        w.writerow(["total", key, report[key]])
    for section in ("by_type", "by_country", "by_decision"):
        for item, n in report[section].items():
            w.writerow([section, item, n])
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


def to_html(report: dict[str, Any]) -> str:
    """A static page: summary table, inline SVG charts, data definitions. No scripts, no network."""
    e = html.escape
    draft = '<p class="draft">DRAFT: not for publication before the embargo ends</p>' if report["draft"] else ""
    summary = [
        ("Requests received", report["requests_received"]),
        ("Data disclosed", report["data_disclosed"]),
        ("No data disclosed", report["no_data_disclosed"]),
        ("Customer notified", report["customer_notified"]),
        ("Notification prohibited", report["notification_prohibited"]),
        ("Prohibitions challenged", report["prohibitions_challenged"]),
        ("Emergency exceptions", report["emergency_exceptions"]),
        ("Emergency exceptions notified promptly", report["emergency_notified_promptly"]),
    ]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in summary)
    definitions = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in report["definitions"].items())
    charts = "".join(
        [
            _bars("Requests by type", report["by_type"], "#2f6f9f"),
            _bars("Requests by country", report["by_country"], "#4f8f4f"),
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
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Transparency report {e(report["period"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: .3em .8em; }}
th {{ text-align: left; font-weight: normal; }} td {{ text-align: right; }}
.draft {{ color: #b00; font-weight: bold; border: 2px solid #b00; padding: .5em; }}
svg {{ display: block; margin: 1.2em 0; }} dt {{ font-weight: bold; margin-top: .6em; }}
</style></head><body>
<h1>Government requests for customer data</h1>
<p>Reporting period {e(report["period"])}: {e(report["from"])} to {e(report["to"])} (UTC).</p>
{draft}
<table>{rows}</table>
{charts}
<h2>Our principles</h2>
<ul><li>We notify the customer unless the law prohibits it, and challenge prohibitions where appropriate.</li>
<li>We disclose only under valid legal authority; in the US, customer content only under a warrant or court order.</li>
<li>We narrow requests to the information strictly required, and direct agencies to the customer first.</li>
<li>Emergency exceptions (imminent death or serious physical harm) are notified promptly and reported here.</li></ul>
<h2>Data definitions</h2><dl>{definitions}</dl>
</body></html>
"""
