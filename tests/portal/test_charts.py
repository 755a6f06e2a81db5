import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from portal.charts import (
    ComparisonRow,
    FunnelStage,
    compact_number,
    comparison_bars,
    funnel_chart,
    interval_chart,
    line_chart,
    nice_ceiling,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id
    assert root.find(f"{SVG}desc").get("id") == desc_id
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_nice_ceiling_and_compact_numbers():
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 3, 7, 12, 2400, 26000)] == [1, 1, 1, 5, 10, 20, 2500, 50000]
    assert [compact_number(v) for v in (0, 950, 1200, 5_600_000, 2_000_000_000)] == ["0", "950", "1.2k", "5.6M", "2B"]


def test_line_chart_draws_hidden_sizes_as_gaps_and_never_prints_them():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    points = [(start, 1200.0), (start + timedelta(days=1), None), (start + timedelta(days=2), 1500.0)]
    root = parse(line_chart(points, title="Size over time"))
    assert len(root.findall(f"{SVG}polyline")) == 2  # the hidden point splits the line
    assert "<min" in texts(root)
    assert "latest visible size 1.5k" in root.find(f"{SVG}desc").text


def test_line_chart_with_no_points_says_so():
    root = parse(line_chart([], title="Size", empty_message="Never refreshed."))
    assert texts(root) == ["Never refreshed."]


def test_comparison_bars_show_lift_and_suppression_and_escape_labels():
    rows = [
        ComparisonRow("<script>", 0.5, 0.25, 2.0),
        ComparisonRow("Tiny group", None, 0.01, None),
    ]
    svg = comparison_bars(rows, title="Country", segment_name="Runners")
    assert "<script>" not in svg
    root = parse(svg)
    assert "×2.00" in texts(root)
    assert "suppressed" in texts(root)
    assert "Tiny group: suppressed" in root.find(f"{SVG}desc").text


def test_funnel_draws_shares_of_each_group_and_notes_hidden_ones():
    stages = [
        FunnelStage("In the group", (1.0, 1.0)),
        FunnelStage("Opened", (0.4, None), ("", "")),
        FunnelStage("Bought", (0.05, None), ("", "<100")),
    ]
    root = parse(funnel_chart(stages, groups=["Treatment", "Control"], title="Funnel"))
    heights = [float(b.get("height")) for b in root.findall(f"{SVG}rect")]
    assert heights[0] == heights[1] > heights[2] > heights[3]
    assert {"100%", "40%", "5.0%", "<100"} <= set(texts(root))
    assert "Control <100" in root.find(f"{SVG}desc").text


def test_interval_chart_verdicts():
    above = parse(interval_chart(estimate=0.03, low=0.01, high=0.05, title="Uplift"))
    assert "lifted conversion" in above.find(f"{SVG}desc").text
    assert "+3.0 pp" in texts(above)
    straddle = parse(interval_chart(estimate=0.01, low=-0.01, high=0.03, title="Uplift"))
    assert "no clear effect" in straddle.find(f"{SVG}desc").text
    missing = parse(interval_chart(estimate=None, low=None, high=None, title="Uplift"))
    assert "Not enough results" in texts(missing)[0]


@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
            st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
        ),
        max_size=30,
    ).map(lambda pts: sorted(pts, key=lambda p: p[0]))
)
def test_line_chart_is_always_well_formed(points):
    parse(line_chart(points, title="t"))


@given(
    st.lists(
        st.builds(
            ComparisonRow,
            st.text(max_size=40),
            st.one_of(st.none(), st.floats(min_value=0, max_value=1)),
            st.one_of(st.none(), st.floats(min_value=0, max_value=1)),
            st.one_of(st.none(), st.floats(min_value=0, max_value=50)),
        ),
        max_size=15,
    )
)
def test_comparison_bars_are_always_well_formed(rows):
    parse(comparison_bars(rows, title="t"))


@given(
    st.floats(min_value=-1, max_value=1),
    st.floats(min_value=0, max_value=0.5),
    st.floats(min_value=0, max_value=0.5),
)
def test_interval_chart_is_always_well_formed(estimate, below, above):
    parse(interval_chart(estimate=estimate, low=estimate - below, high=estimate + above, title="t"))


# --- labels never run into each other -----------------------------------------------------------------------------


def _label_extents(root: ET.Element, y: str) -> list[tuple[float, float]]:
    """The estimated horizontal extents of the texts drawn on one baseline."""
    from portal.charts import text_width

    extents = []
    for t in root.iter(f"{SVG}text"):
        if t.get("y") != y:
            continue
        x, width = (
            float(t.get("x")),
            text_width("".join(t.itertext()) if t.find(f"{SVG}title") is None else t[0].tail or ""),
        )
        anchor = t.get("text-anchor", "start")
        a = x if anchor == "start" else (x - width if anchor == "end" else x - width / 2)
        extents.append((a, a + width))
    return sorted(extents)


def _overlapping(extents: list[tuple[float, float]]) -> list:
    return [(a, b) for a, b in zip(extents, extents[1:], strict=False) if a[1] > b[0]]


def test_time_labels_of_a_history_that_bunches_up_do_not_overlap():
    """A demo's replayed weeks then a refresh a minute later drew three dates on top of each other."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    points = [(start + timedelta(weeks=i), 1000.0 + i) for i in range(5)]
    points += [(points[-1][0] + timedelta(minutes=m), 1200.0) for m in (1, 2, 3)]
    root = parse(line_chart(points, title="Size"))
    extents = _label_extents(root, "212")
    assert len(extents) >= 2 and not _overlapping(extents)
    assert all(a >= 0 and b <= 640 for a, b in extents)


def test_a_run_of_hidden_sizes_is_marked_once_not_a_pile_of_labels():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    points = [(start + timedelta(days=i), None if 5 <= i < 40 else 1000.0) for i in range(60)]
    root = parse(line_chart(points, title="Size"))
    assert texts(root).count("<min") == 1


@given(
    st.lists(
        st.tuples(st.integers(0, 10**7), st.one_of(st.none(), st.floats(0, 1e6))),
        min_size=1,
        max_size=60,
    )
)
def test_time_labels_never_overlap(offsets):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = sorted(((start + timedelta(seconds=s), v) for s, v in offsets), key=lambda p: p[0])
    root = parse(line_chart(points, title="Size"))
    assert not _overlapping(_label_extents(root, "212"))
    assert not _overlapping(_label_extents(root, "182"))  # the "<min" marks


def test_funnel_stage_labels_fit_their_slot_and_value_labels_stagger():
    stages = [FunnelStage(f"A very long stage name number {i}", (0.505, 0.5, 0.495)) for i in range(6)]
    root = parse(funnel_chart(stages, groups=["Treatment", "Control", "Other"], title="Funnel"))
    assert not _overlapping(_label_extents(root, "228"))
    bars = {}
    for t in root.iter(f"{SVG}text"):
        if t.get("class") == "value-label":
            bars.setdefault(t.get("y"), []).append(t)
    for y in bars:
        assert not _overlapping(_label_extents(root, y))
