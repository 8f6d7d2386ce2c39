"""The report plots' SVG writer: well-formed standalone SVG, values placed where they belong, hostile names escaped."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.topics import DeviceRef
from hub.grading import svgplot
from hub.grading.evidence import Window
from hub.grading.reports import plot_svg

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2024, 5, 6, 9, 30, tzinfo=UTC).timestamp()


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def vertices(panel: ET.Element) -> list[tuple[float, float]]:
    line = panel.find(f"{NS}polyline")
    assert line is not None
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in line.attrib["points"].split())]


def panels(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{NS}g")


def texts(element: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in element.iter(f"{NS}text")]


def test_each_point_is_a_vertex_left_to_right_and_a_higher_value_is_higher_on_the_page() -> None:
    values = [3.0, 7.5, -2.0, 10.0, 0.0, 4.25]
    series = svgplot.Series("temp", [(T0 + i, v) for i, v in enumerate(values)], "°C")
    root = parse(svgplot.render([series], T0, T0 + len(values) - 1))
    (panel,) = panels(root)
    drawn = vertices(panel)
    assert len(drawn) == len(values)
    xs = [x for x, _ in drawn]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    by_value = sorted(zip(values, (y for _, y in drawn), strict=True))
    ys = [y for _, y in by_value]
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == len(ys)  # SVG y grows downwards
    assert "temp (°C)" in texts(panel)
    assert any(t.startswith("min -2 · max 10 · last 4.25") for t in texts(panel))


def test_points_follow_the_window_and_ticks_are_utc_times_with_the_date_in_the_axis_title() -> None:
    series = svgplot.Series("x", [(datetime.fromtimestamp(T0 + 60, UTC), 1.0), (T0 + 120, 2.0)])
    root = parse(svgplot.render([series], T0, T0 + 240))
    (panel,) = panels(root)
    (first, second) = vertices(panel)
    left, right = svgplot.LEFT, svgplot.WIDTH - svgplot.RIGHT
    assert first[0] == round(left + (right - left) / 4, 1) and second[0] == round(left + (right - left) / 2, 1)
    labels = texts(panel)
    assert "09:30:00" in labels and "09:31:00" in labels and "09:34:00" in labels
    assert "time (UTC), 2024-05-06" in texts(root)


def test_a_long_window_is_labelled_with_dates() -> None:
    series = svgplot.Series("x", [(T0 + i * 86400, float(i)) for i in range(20)])
    labels = texts(parse(svgplot.render([series])))
    assert "date (UTC)" in labels
    ticks = [label for label in labels if label.startswith("2024-")]
    assert len(ticks) >= 3 and all(len(label) == len("2024-05-06") for label in ticks)


def test_hostile_field_names_and_units_are_escaped_everywhere() -> None:
    name = "<script>alert('x')</script>&\"\x00\x1b"
    svg = svgplot.render([svgplot.Series(name, [(T0, 1.0), (T0 + 1, 2.0)], "<b>")])
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    (panel,) = panels(root)
    assert panel.attrib["data-field"] == "<script>alert('x')</script>&\"\ufffd\ufffd"  # same text, as data
    assert not root.findall(f".//{NS}script")


def test_downsampling_keeps_at_most_the_vertex_budget_and_the_one_sample_spike() -> None:
    values = [math.sin(i / 500) for i in range(100_000)]
    values[61_234] = 50.0
    values[7_777] = -40.0
    series = svgplot.Series("v", [(T0 + i / 100, v) for i, v in enumerate(values)])
    (panel,) = panels(parse(svgplot.render([series])))
    drawn = vertices(panel)
    assert 500 < len(drawn) <= svgplot.MAX_VERTICES
    ys = [y for _, y in drawn]
    top = drawn[ys.index(min(ys))]
    bottom = drawn[ys.index(max(ys))]
    left, right = svgplot.LEFT, svgplot.WIDTH - svgplot.RIGHT
    assert abs(top[0] - (left + 61_234 / 99_999 * (right - left))) < 1  # the spike, where it happened
    assert abs(bottom[0] - (left + 7_777 / 99_999 * (right - left))) < 1
    assert [x for x, _ in drawn] == sorted(x for x, _ in drawn)
    assert any("max 50 " in t for t in texts(panel))


def test_downsample_is_identity_within_budget_and_keeps_extremes_beyond() -> None:
    points = [(float(i), float(i % 7)) for i in range(50)]
    assert svgplot.downsample(points, 100) == points
    cut = svgplot.downsample(points, 10)
    assert len(cut) <= 10 and {v for _, v in cut} >= {0.0, 6.0}


def test_one_point_is_drawn_as_a_dot_and_a_constant_series_as_a_flat_line_in_range() -> None:
    root = parse(
        svgplot.render(
            [svgplot.Series("one", [(T0, 21.5)]), svgplot.Series("flat", [(T0 + i, 5.0) for i in range(10)])]
        )
    )
    one, flat = panels(root)
    assert len(vertices(one)) == 1 and one.find(f"{NS}circle") is not None
    ys = {y for _, y in vertices(flat)}
    assert len(ys) == 1
    (y,) = ys
    assert svgplot.TOP + svgplot.PANEL < y < 2 * svgplot.PANEL - svgplot.BOTTOM  # inside the plot area, not on an edge
    assert "5" in texts(flat) or "5.0" in texts(flat)


def test_nan_and_infinite_values_are_skipped_and_an_all_nan_field_says_so() -> None:
    nan, inf = math.nan, math.inf
    mixed = svgplot.Series("mixed", [(T0, 1.0), (T0 + 1, nan), (T0 + 2, inf), (T0 + 3, -inf), (T0 + 4, 2.0)])
    root = parse(svgplot.render([mixed, svgplot.Series("void", [(T0, nan)])]))
    first, void = panels(root)
    assert len(vertices(first)) == 2
    assert void.find(f"{NS}polyline") is None and "no finite values" in texts(void)
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()


def test_no_series_is_no_svg_and_a_window_without_numbers_keeps_the_reports_note() -> None:
    assert svgplot.render([]) == ""
    window = Window(DeviceRef("c", "l", "d"), "generic", 0, 10**9, readings=[(1, {"state": "on", "ok": True})])
    assert plot_svg(window) == "<p class='muted'>No numeric readings in the window.</p>"


def test_plot_svg_draws_a_devices_numeric_fields_with_their_units() -> None:
    start = int(T0 * 1e9)
    readings = [(start + i * 10**9, {"pm2_5": 10.0 + i, "pm10": 20 + i, "note": "x"}) for i in range(30)]
    window = Window(DeviceRef("c", "l", "d"), "air_quality", start, start + 60 * 10**9, readings=readings)
    root = parse(plot_svg(window))
    by_field = {p.attrib["data-field"]: p for p in panels(root)}
    assert sorted(by_field) == ["pm10", "pm2_5"]
    assert all(len(vertices(p)) == 30 for p in by_field.values())
    assert "pm2_5 (µg/m³)" in texts(by_field["pm2_5"])


def test_tick_labels_are_rounded_to_their_step() -> None:
    lo, hi, ticks, decimals = svgplot.value_axis(0.1, 0.37)
    assert lo <= 0.1 and hi >= 0.37 and decimals == 1
    assert [svgplot.number(t, decimals) for t in ticks] == ["0.1", "0.2", "0.3", "0.4"]
    assert svgplot.number(-0.0000001, 2) == "0"


finite_or_not = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=40),
    points=st.lists(st.tuples(st.floats(T0 - 1e6, T0 + 1e6), finite_or_not), max_size=60),
)
def test_any_input_gives_well_formed_svg(name: str, points: list[tuple[float, float]]) -> None:
    root = parse(svgplot.render([svgplot.Series(name, points)]))
    (panel,) = panels(root)
    line = panel.find(f"{NS}polyline")
    finite = [v for _, v in points if math.isfinite(v)]
    assert (line is None) == (not finite)
    if line is not None:
        assert len(vertices(panel)) == len(finite)
