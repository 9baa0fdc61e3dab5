"""The dashboard's chart geometry (webmail/charts.py): inside the viewBox, proportional, stacked, bounded."""

from __future__ import annotations

from webmail import charts


def test_stacked_columns_are_proportional_and_stay_inside_the_view_box():
    c = charts.stacked_columns(["a", "b", "c"], [("in", "s-in", [2, 0, 4]), ("out", "s-out", [2, 0, 0])])
    assert c.peak == 4 and c.height == charts.COLUMN_HEIGHT + charts.AXIS
    heights = [(r.css, r.height) for r in c.rects]
    assert heights == [("s-in", charts.COLUMN_HEIGHT / 2), ("s-out", charts.COLUMN_HEIGHT / 2),
                       ("s-in", charts.COLUMN_HEIGHT)]  # nothing drawn for zero
    a_in, a_out = c.rects[:2]
    assert a_out.y + a_out.height == a_in.y  # stacked
    for r in c.rects:
        assert 0 <= r.x and r.x + r.width <= c.width and 0 <= r.y and r.y + r.height <= charts.COLUMN_HEIGHT
    assert c.labels[-1].text == "c" and c.labels[-1].anchor == "end"


def test_an_empty_chart_and_at_most_max_bars_bars():
    assert charts.stacked_columns(["x"], [("in", "s", [0])]).rects == ()
    rows = [(f"d{i}", 100 - i, str(100 - i)) for i in range(50)]
    c = charts.horizontal_bars(rows)
    assert len(c.rects) == charts.MAX_BARS and c.rects[0].width > c.rects[-1].width > 0
    assert all(r.x + r.width <= c.width for r in c.rects)
