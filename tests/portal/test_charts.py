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
