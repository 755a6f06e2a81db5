"""Reads: a campaign's report as CSV rows, released numbers only (the same figures the report page shows).

One row per figure: section, group (or variant), measure, day (daily rows only), value (empty when hidden), shown
as (what the page shows, e.g. "fewer than 100"), error bound (±, 95 %), currency (money rows only).
"""

from __future__ import annotations

from decimal import Decimal

from privacy.release import ReleasedCount

from .models import Campaign
from .selectors import FUNNEL_MEASURES, campaign_report_public, campaign_variants_report_public
from .timeseries import campaign_daily_public

HEADER = ["section", "group", "measure", "day", "value", "shown_as", "error_bound", "currency"]


def _count_row(section: str, group: str, measure: str, count: ReleasedCount, day: str = "") -> list[str]:
    value = "" if count.value is None else str(count.value)
    bound = "" if count.value is None else str(count.error_bound)
    return [section, group, measure, day, value, count.display, bound, ""]


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def campaign_report_csv_rows(campaign: Campaign) -> list[list[str]]:
    currency = campaign.merchant.currency
    report = campaign_report_public(campaign)
    rows = [HEADER]
    for group, funnel in (("treatment", report.treatment), ("control", report.control)):
        for measure in FUNNEL_MEASURES:
            rows.append(_count_row("funnel", group, measure, getattr(funnel, measure)))
        rows.append(["funnel", group, "conversion_rate", "", _rate(funnel.conversion_rate), "", "", ""])
        revenue = funnel.revenue
        amount = "" if revenue.value is None else f"{Decimal(revenue.value) / 100:.2f}"
        rows.append(["funnel", group, "attributed_revenue", "", amount, revenue.display, "", currency])
    uplift = report.uplift
    if uplift is not None and uplift.absolute is not None:
        for name in ("absolute", "ci_low", "ci_high", "p_value"):
            rows.append(["uplift", "treatment_vs_control", name, "", _rate(getattr(uplift, name)), "", "", ""])
    else:
        shown = "too early to tell" if report.too_early else "not sent yet"
        rows.append(["uplift", "treatment_vs_control", "absolute", "", "", shown, "", ""])
    if report.incremental_revenue is not None:
        rows.append(
            [
                "uplift",
                "treatment_vs_control",
                "incremental_revenue",
                "",
                str(report.incremental_revenue),
                "",
                "",
                currency,
            ]
        )
    rows.extend(_forecast_rows(report.forecast))
    for variant in campaign_variants_report_public(campaign):
        name = f"variant {variant.letter}"
        for measure in ("size", "sent", "opened", "clicked", "converted"):
            rows.append(_count_row("variants", name, measure, getattr(variant, measure)))
        rows.append(["variants", name, "conversion_rate", "", _rate(variant.conversion_rate), "", "", ""])
        versus = variant.versus_first
        if versus is not None:
            for measure in ("absolute", "ci_low", "ci_high"):
                rows.append(["variants", name, f"versus_A_{measure}", "", _rate(getattr(versus, measure)), "", "", ""])
        elif variant.too_early:
            rows.append(["variants", name, "versus_A_absolute", "", "", "too early to tell", "", ""])
    for daily in campaign_daily_public(campaign):
        for (group, measure), count in daily.figures.items():
            rows.append(_count_row("daily", group, measure, count, day=daily.day.isoformat()))
    return rows


def _forecast_rows(comparison) -> list[list[str]]:
    """The forecast frozen at launch (its released figures as stored) beside the measured incremental conversions
    (from released figures), and the verdict in words."""
    rows = []
    frozen = comparison.forecast if comparison is not None else None
    if frozen and not frozen.get("refused"):
        for measure in ("incremental_conversions", "incremental_low", "incremental_high"):
            count = frozen[measure]
            value = "" if count["size"] is None else str(count["size"])
            bound = "" if count["size"] is None else str(count["error_bound"])
            rows.append(["forecast", "frozen_at_launch", measure, "", value, count["display"], bound, ""])
    if comparison is not None:
        for name, number in (
            ("measured_incremental_conversions", comparison.measured),
            ("measured_low", comparison.measured_low),
            ("measured_high", comparison.measured_high),
        ):
            shown = "" if number is not None else "too early to tell"
            rows.append(["forecast", "treatment_vs_control", name, "", _rate(number), shown, "", ""])
        rows.append(["forecast", "comparison", comparison.verdict, "", "", comparison.words, "", ""])
    return rows
