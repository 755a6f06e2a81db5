"""Charts drawn on the server as inline SVG: no chart library, no script, nothing fetched from elsewhere.

Each function returns markup ready for a template. Every chart is an
`<svg role="img">` with a title and a description that says what it shows in
words, so screen readers get the point; templates put the same numbers in a
table next to it. Values a merchant may not see (audiences under
MIN_AUDIENCE) come in as None and are drawn as gaps, never as numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_ids = itertools.count(1)


def _uid(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10, 13))


def _text(value: object) -> str:
    """Text for inside the SVG: escaped, without the control characters XML forbids."""
    return escape(str(value).translate(_CONTROL))


def _fmt(value: float) -> str:
    """Coordinates with two decimals at most: small markup, no float noise."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above value (for axis tops)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate > 0 and candidate >= value - 1e-12:
            return float(candidate)
    return float(10 ** (exponent + 1))  # pragma: no cover - the loop always returns


def compact_number(value: float) -> str:
    """1234 -> 1.2k, 5600000 -> 5.6M; for axis labels."""
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= threshold:
            text = f"{value / threshold:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2g}"


# Labels are drawn at the charts' 12px type (portal.css, `.chart text`); a character is at most about 0.6em wide
# in the system fonts, digits and bold included, so this over-estimates a label's width rather than under.
CHAR_WIDTH = 7.2
LABEL_GAP = 6.0


def text_width(text: str) -> float:
    """A generous estimate of a label's width in the chart's own units."""
    return len(text) * CHAR_WIDTH


def _extent(x: float, text: str, anchor: str) -> tuple[float, float]:
    w = text_width(text)
    if anchor == "start":
        return x, x + w
    if anchor == "end":
        return x - w, x
    return x - w / 2, x + w / 2


def place_labels(candidates: Sequence[tuple[float, str, str]], *, low: float, high: float) -> list[int]:
    """Which of the candidate labels (x, text, anchor), in order of importance, to draw so that no two overlap
    and none leaves [low, high]; the indices, in the order given. A label that would collide is left out (the
    table beside each chart has every value)."""
    placed: list[tuple[float, float]] = []
    chosen: list[int] = []
    for index, (x, text, anchor) in enumerate(candidates):
        a, b = _extent(x, text, anchor)
        if a < low - 0.5 or b > high + 0.5:
            continue
        if any(a < pb + LABEL_GAP and pa < b + LABEL_GAP for pa, pb in placed):
            continue
        placed.append((a, b))
        chosen.append(index)
    return chosen


def _fit(text: str, width: float) -> str:
    """The text cut with an ellipsis to fit `width` (estimated), or as it is when it fits."""
    most = max(1, int(width // CHAR_WIDTH))
    return text if len(text) <= most else text[: max(1, most - 1)] + "…"


def percent(value: float, digits: int = 0) -> str:
    return f"{value * 100:.{digits}f}%"


def _open_svg(width: int, height: int, title: str, description: str, css_class: str = "chart") -> tuple[str, str]:
    title_id, desc_id = _uid("chart-title"), _uid("chart-desc")
    head = (
        f'<svg class="{css_class}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{title_id}">{_text(title)}</title><desc id="{desc_id}">{_text(description)}</desc>'
    )
    return head, "</svg>"


def _empty(width: int, height: int, title: str, message: str) -> SafeString:
    head, tail = _open_svg(width, height, title, message)
    return mark_safe(  # noqa: S308 - every interpolated text is escaped above and here
        f'{head}<text x="{width / 2}" y="{height / 2}" text-anchor="middle">{_text(message)}</text>{tail}'
    )


# --- size over time ---------------------------------------------------------------------------------------------


def line_chart(
    points: Sequence[tuple[datetime, float | None]],
    *,
    title: str,
    value_label: str = "consumers",
    width: int = 640,
    height: int = 220,
    empty_message: str = "No history yet.",
) -> SafeString:
    """A line over time; None values (hidden, fewer than MIN_AUDIENCE) break the line and are marked."""
    if not points:
        return _empty(width, height, title, empty_message)
    left, right, top, bottom = 56, 16, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    visible = [v for _, v in points if v is not None]
    y_max = max(1.0, nice_ceiling(max(visible) if visible else 1))  # counts: at least 1 at the top
    times = [t.timestamp() for t, _ in points]
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0

    def x_at(t: float) -> float:
        return left + (plot_w * (t - t0) / span if len(points) > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    parts: list[str] = []
    for i in range(5):
        value = y_max * i / 4
        y = y_at(value)
        parts.append(f'<line class="grid-line" x1="{left}" x2="{width - right}" y1="{_fmt(y)}" y2="{_fmt(y)}"/>')
        parts.append(f'<text x="{left - 8}" y="{_fmt(y + 4)}" text-anchor="end">{_text(compact_number(value))}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')

    # x labels: the first and the last, then the points nearest a quarter, a half and three quarters of the way,
    # each only where it does not collide with one already placed. Days alone once the history spans days.
    time_format = "%-d %b" if span >= 2 * 86400 else "%-d %b %H:%M"
    last = len(points) - 1
    wanted = [0, last] + [
        min(range(len(times)), key=lambda i, f=f: abs(times[i] - (t0 + f * span))) for f in (0.5, 0.25, 0.75)
    ]
    candidates, indices, seen = [], [], set()
    for i in wanted:
        text = points[i][0].strftime(time_format)
        if i in indices or text in seen:
            continue
        anchor = "middle" if len(points) == 1 else ("start" if i == 0 else ("end" if i == last else "middle"))
        candidates.append((x_at(times[i]), text, anchor))
        indices.append(i)
        seen.add(text)
    for chosen in sorted(place_labels(candidates, low=0, high=width), key=lambda c: candidates[c][0]):
        x, text, anchor = candidates[chosen]
        parts.append(f'<text x="{_fmt(x)}" y="{height - 8}" text-anchor="{anchor}">{_text(text)}</text>')

    # One path per run of visible points, with a soft area under it.
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in zip(times, (v for _, v in points), strict=True):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x_at(t), y_at(v)))
    for run in (r for r in runs if r):
        line = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in run)
        base = top + plot_h
        area = f"{_fmt(run[0][0])},{_fmt(base)} {line} {_fmt(run[-1][0])},{_fmt(base)}"
        parts.append(f'<polygon class="area-a" points="{area}"/>')
        parts.append(f'<polyline class="line-a" points="{line}"/>')
        for x, y in run:
            parts.append(f'<circle class="dot-a" cx="{_fmt(x)}" cy="{_fmt(y)}" r="3.5"/>')
    # Hidden points: a tick on the axis each, and "<min" written once per run of them where it fits.
    hidden_runs: list[list[float]] = []
    previous_hidden = False
    for t, (_, v) in zip(times, points, strict=True):
        if v is None:
            x = x_at(t)
            parts.append(
                f'<line class="interval" x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(top + plot_h - 4)}" '
                f'y2="{_fmt(top + plot_h + 4)}"/>'
            )
            if not previous_hidden:
                hidden_runs.append([])
            hidden_runs[-1].append(x)
        previous_hidden = v is None
    marks = [((run[0] + run[-1]) / 2, "<min", "middle") for run in hidden_runs]
    for chosen in place_labels(marks, low=left, high=width - right):
        x, text, _ = marks[chosen]
        parts.append(
            f'<text x="{_fmt(x)}" y="{_fmt(top + plot_h - 8)}" text-anchor="middle" '
            f'class="value-label">{_text(text)}</text>'
        )

    latest = next((v for _, v in reversed(points) if v is not None), None)
    description = f"{len(points)} measurements from {points[0][0]:%-d %b %Y} to {points[-1][0]:%-d %b %Y}; " + (
        f"latest visible size {compact_number(latest)} {value_label}." if latest is not None else "all hidden."
    )
    head, tail = _open_svg(width, height, title, description)
    return mark_safe(head + "".join(parts) + tail)  # noqa: S308 - texts escaped above


# --- segment against population (insights) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    segment_share: float | None  # 0..1, None when suppressed
    population_share: float | None
    lift: float | None  # segment share / population share


def comparison_bars(
    rows: Sequence[ComparisonRow],
    *,
    title: str,
    segment_name: str = "Segment",
    width: int = 640,
    bar_height: int = 11,
    empty_message: str = "Nothing to compare yet.",
) -> SafeString:
    """Horizontal paired bars per tag value (segment vs population share) with the lift written at the end."""
    if not rows:
        return _empty(width, 80, title, empty_message)
    label_w, lift_w, pad = 190, 60, 10
    plot_w = width - label_w - lift_w - pad * 2
    row_h = bar_height * 2 + 14
    top = 6
    height = top + row_h * len(rows) + 4
    shares = [s for r in rows for s in (r.segment_share, r.population_share) if s is not None]
    x_max = max(shares, default=0) or 1.0
    x_max = min(1.0, nice_ceiling(x_max)) if x_max <= 1 else x_max
    parts: list[str] = []
    described: list[str] = []
    for i, row in enumerate(rows):
        y = top + i * row_h
        label = _fit(row.label, label_w - 12)
        parts.append(
            f'<text x="{label_w - 8}" y="{_fmt(y + bar_height + 5)}" text-anchor="end">'
            f"<title>{_text(row.label)}</title>{_text(label)}</text>"
        )
        for j, (share, css) in enumerate(((row.segment_share, "series-a"), (row.population_share, "series-b"))):
            by = y + j * (bar_height + 2)
            if share is None:
                parts.append(f'<text x="{label_w + 4}" y="{_fmt(by + bar_height - 1)}" class="small">suppressed</text>')
                continue
            w = max(1.0, plot_w * share / x_max)
            parts.append(
                f'<rect class="{css}" x="{label_w}" y="{_fmt(by)}" width="{_fmt(w)}" height="{bar_height}" rx="2">'
                f"<title>{_text(segment_name if j == 0 else 'Population')}: {percent(share, 1)}</title></rect>"
            )
        if row.lift is not None:
            lift_text = f"×{row.lift:.2f}"
            parts.append(
                f'<text class="value-label" x="{width - pad}" y="{_fmt(y + bar_height + 5)}" text-anchor="end">'
                f"{_text(lift_text)}</text>"
            )
            described.append(f"{row.label}: lift {row.lift:.2f}")
        else:
            described.append(f"{row.label}: suppressed")
    head, tail = _open_svg(
        width,
        height,
        title,
        f"Share of the {segment_name.lower()} against the whole population per value; " + "; ".join(described),
    )
    return mark_safe(head + "".join(parts) + tail)  # noqa: S308 - texts escaped above


# --- campaign funnel and uplift ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStage:
    """One step of a funnel: per group, the share of the group that reached it (0 to 1), or None.

    `missing` says why a share is absent: "" for a step that does not apply to that group (the control
    group gets no message), or a short note such as "<100" when the figure is hidden.
    """

    label: str
    shares: tuple[float | None, ...]
    missing: tuple[str, ...] = ()


def funnel_chart(
    stages: Sequence[FunnelStage],
    *,
    groups: Sequence[str],
    title: str,
    width: int = 640,
    height: int = 240,
) -> SafeString:
    """Grouped vertical bars per funnel stage: each bar is the share of its own group (rates, not sizes)."""
    if not stages or not groups:
        return _empty(width, height, title, "No deliveries yet.")
    left, right, top, bottom = 40, 10, 24, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(stages)
    bar_w = min(48.0, (slot - 18) / len(groups))
    css = ("series-a", "series-b", "series-c")
    parts: list[str] = []
    for i in range(5):
        y = top + plot_h * i / 4
        parts.append(f'<line class="grid-line" x1="{left}" x2="{width - right}" y1="{_fmt(y)}" y2="{_fmt(y)}"/>')
        parts.append(f'<text x="{left - 6}" y="{_fmt(y + 4)}" text-anchor="end">{100 - 25 * i}%</text>')
    described = []
    for i, stage in enumerate(stages):
        x0 = left + i * slot + (slot - bar_w * len(groups)) / 2
        parts.append(
            f'<text x="{_fmt(left + i * slot + slot / 2)}" y="{height - 12}" text-anchor="middle">'
            f"<title>{_text(stage.label)}</title>{_text(_fit(stage.label, slot - LABEL_GAP))}</text>"
        )
        texts = []
        for g, share in enumerate(stage.shares):
            x = x0 + g * bar_w
            if share is None:
                note = stage.missing[g] if g < len(stage.missing) else ""
                if note:
                    parts.append(
                        f'<text class="value-label" x="{_fmt(x + bar_w / 2)}" y="{_fmt(top + plot_h - 4)}" '
                        f'text-anchor="middle">{_text(note)}</text>'
                    )
                    texts.append(f"{groups[g]} {note}")
                continue
            share = min(1.0, max(0.0, share))
            h = plot_h * share
            label = percent(share, 1 if share < 0.1 else 0)
            # Side by side, labels wider than their bars would run into each other: every other one goes a line up.
            lift = 12 * (g % 2) if text_width(label) + LABEL_GAP > bar_w else 0
            parts.append(
                f'<rect class="{css[g % 3]}" x="{_fmt(x + 2)}" y="{_fmt(top + plot_h - h)}" '
                f'width="{_fmt(bar_w - 4)}" height="{_fmt(max(h, 0.5))}" rx="2">'
                f"<title>{_text(groups[g])}, {_text(stage.label)}: {label}</title></rect>"
                f'<text class="value-label" x="{_fmt(x + bar_w / 2)}" y="{_fmt(max(10, top + plot_h - h - 4 - lift))}" '
                f'text-anchor="middle">{label}</text>'
            )
            texts.append(f"{groups[g]} {label}")
        described.append(f"{stage.label}: " + (", ".join(texts) or "not applicable"))
    head, tail = _open_svg(width, height, title, "; ".join(described))
    return mark_safe(head + "".join(parts) + tail)  # noqa: S308 - texts escaped above


def interval_chart(
    *,
    estimate: float | None,
    low: float | None,
    high: float | None,
    title: str,
    width: int = 640,
    height: int = 92,
    as_percentage_points: bool = True,
) -> SafeString:
    """A point estimate with its confidence interval on an axis through zero (e.g. uplift in percentage points)."""
    if estimate is None or low is None or high is None:
        return _empty(width, height, title, "Not enough results yet to estimate the uplift.")
    scale = 100 if as_percentage_points else 1
    unit = " pp" if as_percentage_points else ""
    lo, hi, est = low * scale, high * scale, estimate * scale
    extent = nice_ceiling(max(abs(lo), abs(hi), abs(est), 0.1) * 1.15)
    left, right = 20, 20
    plot_w = width - left - right
    mid_y = 40

    def x_at(v: float) -> float:
        return left + plot_w * (v + extent) / (2 * extent)

    def label(v: float) -> str:
        return f"{v:+.1f}{unit}" if v else f"0{unit}"

    parts = [
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{mid_y}" y2="{mid_y}"/>',
        f'<line class="zero" x1="{_fmt(x_at(0))}" x2="{_fmt(x_at(0))}" y1="{mid_y - 26}" y2="{mid_y + 26}"/>',
    ]
    for v, anchor in (
        (-extent, "start"),
        (-extent / 2, "middle"),
        (0, "middle"),
        (extent / 2, "middle"),
        (extent, "end"),
    ):
        x = left if anchor == "start" else (width - right if anchor == "end" else x_at(v))
        parts.append(f'<text x="{_fmt(x)}" y="{height - 8}" text-anchor="{anchor}">{_text(label(v))}</text>')
    parts.append(
        f'<line class="interval" x1="{_fmt(x_at(lo))}" x2="{_fmt(x_at(hi))}" y1="{mid_y}" y2="{mid_y}"/>'
        f'<line class="interval" x1="{_fmt(x_at(lo))}" x2="{_fmt(x_at(lo))}" y1="{mid_y - 8}" y2="{mid_y + 8}"/>'
        f'<line class="interval" x1="{_fmt(x_at(hi))}" x2="{_fmt(x_at(hi))}" y1="{mid_y - 8}" y2="{mid_y + 8}"/>'
        f'<circle class="point" cx="{_fmt(x_at(est))}" cy="{mid_y}" r="6"/>'
        f'<text class="value-label" x="{_fmt(x_at(est))}" y="{mid_y - 14}" text-anchor="middle">'
        f"{_text(label(est))}</text>"
    )
    verdict = (
        "the interval is above zero: the campaign lifted conversion"
        if lo > 0
        else "the interval is below zero: the campaign lowered conversion"
        if hi < 0
        else "the interval includes zero: no clear effect yet"
    )
    head, tail = _open_svg(
        width, height, title, f"Uplift {label(est)}, 95% interval {label(lo)} to {label(hi)}; {verdict}."
    )
    return mark_safe(head + "".join(parts) + tail)  # noqa: S308 - texts escaped above
