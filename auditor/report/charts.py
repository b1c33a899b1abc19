"""Charts as inline SVG, drawn in Python from report figures: no JavaScript, identical in HTML and PDF, legible in
grey scale (each model has its own marker shape and each context its own dash pattern), each with a caption and a
text alternative. Every label is XML-escaped: model, challenge and attack names come from user files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH = 680
INK, MUTED, GRID = "#1a1a1a", "#666666", "#d9d9d9"
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
DASHES = ("4 3", "1 3", "8 3 2 3", "none")
FILLS = ("#1f4e79", "#b35900", "#2e7d32", "#6a1b9a", "#4e342e")


@dataclass(frozen=True)
class Chart:
    """An SVG chart with its caption and a text alternative that states the same figures in words."""

    id: str
    svg: str
    caption: str
    alt: str


@dataclass(frozen=True)
class Estimate:
    """A rate with its 95% interval for one model in one row of a chart."""

    model: str
    rate: float | None
    low: float
    high: float


def _marker(shape: str, x: float, y: float, r: float, fill: str) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" stroke="{INK}" stroke-width="0.8"/>'
    if shape == "square":
        return (
            f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" fill="{fill}" '
            f'stroke="{INK}" stroke-width="0.8"/>'
        )
    if shape == "triangle":
        points = f"{x:.1f},{y - r * 1.2:.1f} {x - r * 1.1:.1f},{y + r:.1f} {x + r * 1.1:.1f},{y + r:.1f}"
        return f'<polygon points="{points}" fill="{fill}" stroke="{INK}" stroke-width="0.8"/>'
    if shape == "diamond":
        points = (
            f"{x:.1f},{y - r * 1.3:.1f} {x + r * 1.3:.1f},{y:.1f} {x:.1f},{y + r * 1.3:.1f} {x - r * 1.3:.1f},{y:.1f}"
        )
        return f'<polygon points="{points}" fill="{fill}" stroke="{INK}" stroke-width="0.8"/>'
    cross = f"M{x - r:.1f},{y - r:.1f} L{x + r:.1f},{y + r:.1f} M{x - r:.1f},{y + r:.1f} L{x + r:.1f},{y - r:.1f}"
    return f'<path d="{cross}" stroke="{fill}" stroke-width="2"/>'


def _svg(chart_id: str, height: float, body: list[str], alt: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" width="100%" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
        f'font-size="10"><title id="{chart_id}-t">{escape(alt.split(". ")[0])}</title>'
        f'<desc id="{chart_id}-d">{escape(alt)}</desc>' + "".join(body) + "</svg>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = INK, width: float = 1.0, dash: str = "none") -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}" '
        f'stroke-dasharray="{dash}"/>'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: float = 10, fill: str = INK) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}">{escape(text)}</text>'
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _legend(models: Sequence[str], contexts: Sequence[tuple[str, str]], y: float) -> tuple[list[str], float]:
    """Legend entries from y down, wrapped onto a new line where one would cross the right edge; returns them
    and the y of the last line."""
    out, x = [], 10.0
    entries: list[tuple[str, float, int]] = [(m, 20 + 6.2 * min(len(m), 28), i) for i, m in enumerate(models)]
    entries += [(c, 40 + 6.2 * min(len(c) + 9, 39), -1 - i) for i, (c, _) in enumerate(contexts)]
    for label, width, index in entries:
        if x > 10 and x + width > WIDTH - 10:
            x, y = 10.0, y + 13
        if index >= 0:
            out.append(_marker(SHAPES[index % len(SHAPES)], x + 5, y - 3, 4, FILLS[index % len(FILLS)]))
            out.append(_text(x + 13, y, _clip(label, 28)))
        else:
            dash = DASHES[(-1 - index) % len(DASHES)]
            out.append(
                f'<line x1="{x:.1f}" y1="{y - 3}" x2="{x + 18:.1f}" y2="{y - 3}" stroke="{INK}" stroke-width="1.4" '
                f'stroke-dasharray="{dash}"/>'
            )
            out.append(_text(x + 22, y, f"minimum: {_clip(label, 30)}"))
        x += width
    return out, y


def forest(
    rows: Sequence[tuple[str, Sequence[Estimate], Sequence[tuple[str, float]]]],
    models: Sequence[str],
    contexts: Sequence[tuple[str, str]],
) -> Chart:
    """Pass rates with 95% intervals: a row per challenge, a marker per model, and each context's minimum drawn
    where a rule of that context selects the challenge. `rows` holds (challenge title, estimates, [(context title,
    minimum)]); `contexts` gives (context title, dash) for the legend."""
    left, right, row_h = 210.0, WIDTH - 20.0, 12.0 + 9.0 * len(models)
    top = 34.0
    height = top + row_h * len(rows) + 34

    def x(v: float) -> float:
        return left + (right - left) * v

    body = [f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(_line(x(tick), top - 6, x(tick), height - 30, GRID, 0.8))
        body.append(_text(x(tick), top - 9, f"{tick:.0%}", "middle", 9, MUTED))
    context_dash = {name: DASHES[i % len(DASHES)] for i, (name, _) in enumerate(contexts)}
    words = []
    for r, (title, estimates, minimums) in enumerate(rows):
        y0 = top + r * row_h
        if r % 2:
            body.append(f'<rect x="0" y="{y0:.1f}" width="{WIDTH}" height="{row_h:.1f}" fill="#f6f6f6"/>')
        body.append(_text(8, y0 + row_h / 2 + 3, _clip(title, 36)))
        for context, minimum in minimums:
            body.append(
                f'<line x1="{x(minimum):.1f}" y1="{y0 + 1:.1f}" x2="{x(minimum):.1f}" y2="{y0 + row_h - 1:.1f}" '
                f'stroke="{INK}" stroke-width="1.4" stroke-dasharray="{context_dash.get(context, "none")}"/>'
            )
        parts = []
        for i, e in enumerate(estimates):
            y = y0 + 8 + i * 9
            fill = FILLS[i % len(FILLS)]
            if e.rate is None:
                body.append(_text(left + 4, y + 3, "no decided trials", size=8, fill=MUTED))
                parts.append(f"{e.model} no decided trials")
                continue
            body.append(
                f'<line x1="{x(e.low):.1f}" y1="{y:.1f}" x2="{x(e.high):.1f}" y2="{y:.1f}" stroke="{fill}" '
                f'stroke-width="1.6"/>'
            )
            body.append(_marker(SHAPES[i % len(SHAPES)], x(e.rate), y, 3.6, fill))
            parts.append(f"{e.model} {_pct(e.rate)} ({_pct(e.low)} to {_pct(e.high)})")
        words.append(f"{title}: " + "; ".join(parts))
    legend, last = _legend(models, contexts, height - 10)
    body += legend
    height = max(height, last + 10)
    body[0] = f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>'
    alt = "Pass rate by challenge and model with 95% intervals. " + ". ".join(words) + "."
    caption = (
        "Pass rate per challenge and model, with its 95% interval; vertical lines mark each deployment context's "
        "minimum where one of its rules selects the challenge. A rule holds when the whole interval lies right of "
        "its line."
    )
    return Chart("forest", _svg("forest", height, body, alt), caption, alt)


def _shade(rate: float | None) -> tuple[str, str]:
    """A fill from dark (low pass rate) to light (high) and a text colour that stays readable on it."""
    if rate is None:
        return "#ffffff", MUTED
    level = int(60 + 190 * rate)
    return f"rgb({level},{level},{min(255, level + 10)})", ("white" if rate < 0.5 else INK)


def heatmap(challenges: Sequence[str], models: Sequence[str], rates: dict[tuple[str, str], float | None]) -> Chart:
    """Challenges by models, each cell shaded by pass rate (dark is low) and labelled with it."""
    left, top, cell_h = 230.0, 40.0, 18.0
    cell_w = min(120.0, (WIDTH - left - 10) / max(1, len(models)))
    height = top + cell_h * len(challenges) + 10
    body = [f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>']
    for j, model in enumerate(models):
        body.append(_text(left + cell_w * (j + 0.5), top - 8, _clip(model, int(cell_w / 6)), "middle", 9))
    words = []
    for i, challenge in enumerate(challenges):
        y = top + i * cell_h
        body.append(_text(8, y + cell_h / 2 + 3, _clip(challenge, 38)))
        parts = []
        for j, model in enumerate(models):
            rate = rates.get((challenge, model))
            fill, ink = _shade(rate)
            body.append(
                f'<rect x="{left + j * cell_w:.1f}" y="{y:.1f}" width="{cell_w - 2:.1f}" height="{cell_h - 2}" '
                f'fill="{fill}" stroke="{GRID}"/>'
            )
            body.append(_text(left + j * cell_w + cell_w / 2 - 1, y + cell_h / 2 + 3, _pct(rate), "middle", 9, ink))
            parts.append(f"{model} {_pct(rate)}")
        words.append(f"{challenge}: " + ", ".join(parts))
    alt = "Pass rate by challenge and model. " + ". ".join(words) + "."
    caption = "Pass rate of every challenge for every model: darker cells passed less often."
    return Chart("heatmap", _svg("heatmap", height, body, alt), caption, alt)


def bars(
    chart_id: str,
    groups: Sequence[tuple[str, Sequence[Estimate]]],
    models: Sequence[str],
    baseline: dict[str, float | None],
    caption: str,
    what: str,
) -> Chart:
    """Horizontal bars: a group per row (an attack, say) with a bar per model and its interval, and each model's
    baseline (the direct request) as a dashed line of its own."""
    left, right, top = 200.0, WIDTH - 20.0, 30.0
    row_h = 8.0 + 10.0 * len(models)
    height = top + row_h * len(groups) + 30

    def x(v: float) -> float:
        return left + (right - left) * v

    body = [f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(_line(x(tick), top - 4, x(tick), height - 28, GRID, 0.8))
        body.append(_text(x(tick), top - 8, f"{tick:.0%}", "middle", 9, MUTED))
    for i, model in enumerate(models):
        base = baseline.get(model)
        if base is not None:
            body.append(_line(x(base), top - 2, x(base), height - 28, FILLS[i % len(FILLS)], 1.2, DASHES[i % 3]))
    words = []
    for r, (label, estimates) in enumerate(groups):
        y0 = top + r * row_h
        body.append(_text(8, y0 + row_h / 2 + 3, _clip(label, 34)))
        parts = []
        for i, e in enumerate(estimates):
            y = y0 + 4 + i * 10
            fill = FILLS[i % len(FILLS)]
            if e.rate is None:
                parts.append(f"{e.model} –")
                continue
            body.append(
                f'<rect x="{left:.1f}" y="{y:.1f}" width="{x(e.rate) - left:.1f}" height="7" fill="{fill}" '
                f'fill-opacity="{0.85 - 0.2 * (i % 3):.2f}"/>'
            )
            body.append(_line(x(e.low), y + 3.5, x(e.high), y + 3.5, INK, 1))
            parts.append(f"{e.model} {_pct(e.rate)} ({_pct(e.low)} to {_pct(e.high)})")
        words.append(f"{label}: " + "; ".join(parts))
    legend, last = _legend(models, [], height - 8)
    body += legend
    height = max(height, last + 8)
    body[0] = f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>'
    based = "; ".join(f"{m} {_pct(b)}" for m, b in baseline.items())
    alt = f"{what}. " + ". ".join(words) + (f". Direct-request baseline: {based}." if baseline else ".")
    return Chart(chart_id, _svg(chart_id, height, body, alt), caption, alt)


def balance(points: Sequence[tuple[str, Estimate, Estimate]]) -> Chart:
    """Harmful compliance (up) against over-refusal (right) per model, with intervals: the safe and useful corner
    is bottom left."""
    size, left, top = 300.0, 60.0, 20.0
    height = top + size + 50

    def px(v: float) -> float:
        return left + size * v

    def py(v: float) -> float:
        return top + size * (1 - v)

    body = [
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>',
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="{MUTED}"/>',
        f'<rect x="{left}" y="{top + size * 0.8:.1f}" width="{size * 0.2:.1f}" height="{size * 0.2:.1f}" '
        f'fill="#e8f0e8"/>',
    ]
    for tick in (0, 0.5, 1.0):
        body.append(_text(px(tick), top + size + 14, f"{tick:.0%}", "middle", 9, MUTED))
        body.append(_text(left - 6, py(tick) + 3, f"{tick:.0%}", "end", 9, MUTED))
    body.append(_text(px(0.5), top + size + 30, "over-refusal of harmless requests", "middle"))
    body.append(
        f'<text x="14" y="{py(0.5):.1f}" transform="rotate(-90 14 {py(0.5):.1f})" text-anchor="middle" '
        f'font-size="10">harmful compliance</text>'
    )
    words = []
    for i, (model, harm, refusal) in enumerate(points):
        if harm.rate is None or refusal.rate is None:
            words.append(f"{model}: not measured")
            continue
        fill = FILLS[i % len(FILLS)]
        body.append(
            f'<line x1="{px(refusal.low):.1f}" y1="{py(harm.rate):.1f}" x2="{px(refusal.high):.1f}" '
            f'y2="{py(harm.rate):.1f}" stroke="{fill}"/>'
        )
        body.append(
            f'<line x1="{px(refusal.rate):.1f}" y1="{py(harm.low):.1f}" x2="{px(refusal.rate):.1f}" '
            f'y2="{py(harm.high):.1f}" stroke="{fill}"/>'
        )
        body.append(_marker(SHAPES[i % len(SHAPES)], px(refusal.rate), py(harm.rate), 5, fill))
        body.append(_text(px(refusal.rate) + 8, py(harm.rate) - 6, _clip(model, 24), size=9))
        words.append(f"{model}: harmful compliance {_pct(harm.rate)}, over-refusal {_pct(refusal.rate)}")
    alt = "Harmful compliance against over-refusal per model. " + ". ".join(words) + "."
    caption = (
        "Each model's share of harmful requests it carried out (up) against its share of harmless twins it refused "
        "(right), with 95% intervals. The shaded corner (both under 20%) is safe and useful; a model that refuses "
        "everything sits at the right edge."
    )
    return Chart("balance", _svg("balance", height, body, alt), caption, alt)


def change(rows: Sequence[tuple[str, float | None, float | None, bool]]) -> Chart:
    """Before and now per model and challenge: a line from the earlier rate (hollow) to the current one (filled),
    marked when the paired test finds the change significant."""
    left, right, top, row_h = 260.0, WIDTH - 20.0, 26.0, 16.0
    height = top + row_h * len(rows) + 20

    def x(v: float) -> float:
        return left + (right - left) * v

    body = [f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>']
    for tick in (0, 0.5, 1.0):
        body.append(_text(x(tick), top - 8, f"{tick:.0%}", "middle", 9, MUTED))
    words = []
    for r, (label, before, now, significant) in enumerate(rows):
        y = top + r * row_h + 8
        body.append(_text(8, y + 3, _clip(label, 42) + (" *" if significant else "")))
        if before is None or now is None:
            continue
        body.append(
            f'<line x1="{x(before):.1f}" y1="{y}" x2="{x(now):.1f}" y2="{y}" stroke="{INK}" '
            f'stroke-width="{2 if significant else 1}"/>'
        )
        body.append(f'<circle cx="{x(before):.1f}" cy="{y}" r="3.5" fill="white" stroke="{INK}"/>')
        body.append(f'<circle cx="{x(now):.1f}" cy="{y}" r="3.5" fill="{INK}"/>')
        words.append(f"{label}: {_pct(before)} before, {_pct(now)} now{' (significant)' if significant else ''}")
    alt = "Change in pass rate since the baseline run. " + ". ".join(words) + "."
    caption = (
        "Pass rate before (hollow) and now (filled) on the same trials; * marks a change McNemar's test finds at "
        "p < 0.05."
    )
    return Chart("change", _svg("change", height, body, alt), caption, alt)
