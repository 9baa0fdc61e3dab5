"""Geometry for the admin dashboard's server-rendered SVG charts: stacked columns and horizontal bars (no JavaScript).

The templates draw the shapes computed here inside an <svg role="img"> with a <title> and
<desc>, and show the same figures in a table, so the chart has a text alternative. Colours come
from classes in static/admin_queue.css (the pages' CSP allows no inline style).
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 420  # viewBox units; the SVG scales to the screen's width (text stays legible on a phone)
COLUMN_HEIGHT = 160
AXIS = 24  # room under the columns for the day labels
LABEL_WIDTH = 130  # room left of horizontal bars for their labels
ROW = 24
MAX_BARS = 20  # horizontal bars drawn at most (the table lists every row)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str  # the series' class
    title: str  # a tooltip and a text for the shape


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    rects: tuple[Rect, ...]
    labels: tuple[Label, ...]
    peak: int


def stacked_columns(labels: list[str], series: list[tuple[str, str, list[int]]]) -> Chart:
    """One column per label, the series (name, css class, values) stacked bottom up."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    step = WIDTH / max(1, len(labels))
    bar = step * 0.7
    rects, texts = [], []
    for i, label in enumerate(labels):
        x = i * step + (step - bar) / 2
        base = COLUMN_HEIGHT
        for name, css, values in series:
            h = COLUMN_HEIGHT * values[i] / peak
            if values[i]:
                rects.append(Rect(round(x, 1), round(base - h, 1), round(bar, 1), round(h, 1), css,
                                  f"{label} {name}: {values[i]}"))
            base -= h
        if i == len(labels) - 1:  # the last label ends at the right edge (centred, it would be cut off)
            texts.append(Label(WIDTH - 1, COLUMN_HEIGHT + 16, label, "end"))
        elif (len(labels) - 1 - i) % 2 == 0:  # every other day, so that the labels do not overlap
            texts.append(Label(round(i * step + step / 2, 1), COLUMN_HEIGHT + 16, label))
    return Chart(WIDTH, COLUMN_HEIGHT + AXIS, tuple(rects), tuple(texts), max(totals, default=0))


def horizontal_bars(rows: list[tuple[str, int, str]], css: str = "bar") -> Chart:
    """One bar per (label, value, value text), longest first as given, at most MAX_BARS."""
    rows = rows[:MAX_BARS]
    peak = max((v for _, v, _ in rows), default=0) or 1
    span = WIDTH - LABEL_WIDTH - 70  # room right of the bar for its value text
    rects, texts = [], []
    for i, (label, value, shown) in enumerate(rows):
        y = i * ROW + 4
        w = max(1.0, span * value / peak) if value else 0.0
        rects.append(Rect(LABEL_WIDTH, y, round(w, 1), ROW - 8, css, f"{label}: {shown}"))
        texts.append(Label(LABEL_WIDTH - 6, y + ROW / 2 + 4, label, "end"))
        texts.append(Label(round(LABEL_WIDTH + w + 6, 1), y + ROW / 2 + 4, shown, "start"))
    return Chart(WIDTH, max(ROW, ROW * len(rows) + 4), tuple(rects), tuple(texts), max((v for _, v, _ in rows), default=0))
