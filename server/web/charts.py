"""Charts drawn on the server as SVG: a key result's burn-up and a person's year strip.

The data of each chart is a Struct (the JSON twin), the drawing a pure function
of it. Readable without colour: the lines differ by dash and markers, pauses are
hatched, the due date and every mark carry a text label, and each SVG has a
<title> and <desc> that say what it shows.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html import escape

import msgspec

from projections.goals import CheckInView, KeyResultView, ObjectiveView
from projections.review import Review
from projections.state import ProjectionState
from projections.timeline import expected_percent, pauses_of


class BurnUpPoint(msgspec.Struct, frozen=True):
    day: date
    progress: float  # percent of the way from start to target
    value: float | None
    confidence: str


class BurnUp(msgspec.Struct, frozen=True):
    """A key result's check-ins against the expected line over its objective's cycle."""

    key_result: str
    title: str
    objective_title: str
    owner: str
    unit: str
    start: float | None
    target: float | None
    starts_on: date
    due_on: date
    today: date
    progress: float
    expected: list[tuple[date, float]]
    checkins: list[BurnUpPoint]
    pauses: list[tuple[date, date]]


def _progress_of(kr: KeyResultView, value: float | None, percent: float | None) -> float | None:
    if value is not None and kr.start is not None and kr.target is not None:
        if kr.target == kr.start:
            return None
        return max(0.0, min(100.0, 100.0 * (value - kr.start) / (kr.target - kr.start)))
    if value is not None and kr.target is not None and kr.kind in ("stay-above", "stay-below"):
        held = value >= kr.target if kr.kind == "stay-above" else value <= kr.target
        return 100.0 if held else 0.0
    return percent


def burn_up(
    state: ProjectionState,
    objective: ObjectiveView,
    kr: KeyResultView,
    checkins: list[CheckInView],
    now: datetime,
    viewer: str,
) -> BurnUp:
    """The burn-up data of a key result (check-ins as progress, the expected line with pauses).

    Pauses are private: only the owner's own chart shows and counts them."""
    pauses = pauses_of(state, objective.owner) if viewer == objective.owner else []
    start, due = objective.starts_on, objective.ends_on
    days = sorted(
        {start, due + timedelta(days=1)}
        | {d for p in pauses for d in (p[0], p[1] + timedelta(days=1)) if start <= d <= due}
        | {start + timedelta(days=7 * i) for i in range(0, (due - start).days // 7 + 1)}
    )
    expected = [(day, round(expected_percent(start, due, day, pauses), 2)) for day in days]
    points = []
    for checkin in checkins:
        progress = _progress_of(kr, checkin.value, checkin.percent)
        if progress is None:
            continue
        points.append(
            BurnUpPoint(
                checkin.occurred_at.date(), round(progress, 2), checkin.value, checkin.confidence
            )
        )
    return BurnUp(
        key_result=kr.id,
        title=kr.title,
        objective_title=objective.title,
        owner=objective.owner,
        unit=kr.unit,
        start=kr.start,
        target=kr.target,
        starts_on=start,
        due_on=due,
        today=now.date(),
        progress=kr.progress,
        expected=expected,
        checkins=points,
        pauses=[p for p in pauses if p[1] >= start and p[0] <= due],
    )


_W, _H = 640, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 16, 16, 40


def _x(chart: BurnUp, day: date) -> float:
    span = max(1, (chart.due_on - chart.starts_on).days + 1)
    share = (day - chart.starts_on).days / span
    return round(_LEFT + max(0.0, min(1.0, share)) * (_W - _LEFT - _RIGHT), 1)


def _y(progress: float) -> float:
    return round(_TOP + (1 - progress / 100.0) * (_H - _TOP - _BOTTOM), 1)


STANDALONE_STYLE = (
    "<style>.grid{stroke:#d5dae1}.axis{fill:#5b6470;font:11px sans-serif}"
    ".expected{fill:none;stroke:#5b6470;stroke-width:2;stroke-dasharray:6 4}"
    ".actual{fill:none;stroke:#2f7ed8;stroke-width:2.5}"
    ".checkin{fill:#fff;stroke:#2f7ed8;stroke-width:2}.checkin.off-track{fill:#c0362c}"
    ".checkin.at-risk{fill:#9a6700}.due{stroke:#c0362c;stroke-width:2}"
    ".today{stroke:#5b6470;stroke-dasharray:2 3}.hatch{stroke:#5b6470;opacity:.5}</style>"
)
"""The page's chart styles, inlined when the SVG is served on its own."""


def burn_up_svg(chart: BurnUp, *, standalone: bool = False) -> str:
    """The burn-up as SVG (``standalone``: with its own styles, for the .svg download)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" class="chart burnup"'
        f' role="img" aria-labelledby="t-{chart.key_result} d-{chart.key_result}">',
        f'<title id="t-{chart.key_result}">Burn-up: {escape(chart.title)}</title>',
        f'<desc id="d-{chart.key_result}">{len(chart.checkins)} check-ins; progress'
        f" {chart.progress:.0f}% against the expected line from {chart.starts_on} to the due"
        f" date {chart.due_on}; paused days hatched.</desc>",
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" class="hatch"/>'
        "</pattern></defs>",
        STANDALONE_STYLE if standalone else "",
    ]
    for first, last in chart.pauses:
        x1, x2 = _x(chart, max(first, chart.starts_on)), _x(chart, last + timedelta(days=1))
        parts.append(
            f'<rect class="pause" x="{x1}" y="{_TOP}" width="{max(1.0, x2 - x1):.1f}"'
            f' height="{_H - _TOP - _BOTTOM}" fill="url(#hatch)"><title>paused {first} to'
            f" {last}</title></rect>"
        )
    for level in (0, 25, 50, 75, 100):
        y = _y(level)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y}" y2="{y}"/>')
        parts.append(
            f'<text class="axis" x="{_LEFT - 6}" y="{y + 4}" text-anchor="end">{level}%</text>'
        )
    parts.append(
        f'<text class="axis" x="{_LEFT}" y="{_H - 8}">{chart.starts_on.isoformat()}</text>'
    )
    due_x = _x(chart, chart.due_on + timedelta(days=1))
    parts.append(f'<line class="due" x1="{due_x}" x2="{due_x}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>')
    parts.append(
        f'<text class="axis" x="{due_x}" y="{_H - 8}" text-anchor="end">due'
        f" {chart.due_on.isoformat()}</text>"
    )
    if chart.starts_on <= chart.today <= chart.due_on:
        today_x = _x(chart, chart.today)
        parts.append(
            f'<line class="today" x1="{today_x}" x2="{today_x}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>'
        )
        parts.append(
            f'<text class="axis" x="{today_x}" y="{_H - _BOTTOM + 14}"'
            ' text-anchor="middle">today</text>'
        )
    expected = " ".join(f"{_x(chart, d)},{_y(p)}" for d, p in chart.expected)
    parts.append(
        f'<polyline class="expected" points="{expected}"><title>expected</title></polyline>'
    )
    if chart.checkins:
        actual = [(chart.starts_on, 0.0)] + [(p.day, p.progress) for p in chart.checkins]
        path = " ".join(f"{_x(chart, d)},{_y(p)}" for d, p in actual)
        parts.append(f'<polyline class="actual" points="{path}"/>')
        for point in chart.checkins:
            value = "" if point.value is None else f"{point.value:g} {escape(chart.unit)}, "
            parts.append(
                f'<circle class="checkin {point.confidence}" cx="{_x(chart, point.day)}"'
                f' cy="{_y(point.progress)}" r="4"><title>{point.day}: {value}'
                f"{point.progress:.0f}%, {point.confidence}</title></circle>"
            )
    legend_y = _H - _BOTTOM + 28
    parts.append(
        f'<g class="legend"><line class="actual" x1="{_LEFT + 150}" x2="{_LEFT + 176}"'
        f' y1="{legend_y - 4}" y2="{legend_y - 4}"/><text class="axis" x="{_LEFT + 180}"'
        f' y="{legend_y}">check-ins (solid, dots)</text><line class="expected"'
        f' x1="{_LEFT + 330}" x2="{_LEFT + 356}" y1="{legend_y - 4}" y2="{legend_y - 4}"/>'
        f'<text class="axis" x="{_LEFT + 360}" y="{legend_y}">expected (dashed)</text></g>'
    )
    parts.append("</svg>")
    return "".join(parts)


# --- a person's year strip --------------------------------------------------------------


class YearWeek(msgspec.Struct, frozen=True):
    week_start: date  # the Monday
    checkins: int
    completed: int
    future: bool


class YearStrip(msgspec.Struct, frozen=True):
    """Milestones completed and check-ins per week over the review period."""

    person: str
    start: date
    end: date
    weeks: list[YearWeek]


def year_strip(shown: Review) -> YearStrip:
    """Weekly counts of the review's check-ins and completions (the gaps visible)."""
    first = shown.start - timedelta(days=shown.start.weekday())
    checkins: dict[date, int] = {}
    completed: dict[date, int] = {}

    def monday(day: date) -> date:
        return day - timedelta(days=day.weekday())

    for history in shown.checkins:
        for entry in history.entries:
            week = monday(entry.occurred_at.date())
            checkins[week] = checkins.get(week, 0) + 1
    groups = [g for o in shown.objectives for g in o.completed] + shown.other_completed
    for group in groups:
        for milestone in group.milestones:
            week = monday(milestone.completed_on)
            completed[week] = completed.get(week, 0) + 1
    today = shown.generated_at.date()
    weeks: list[YearWeek] = []
    week = first
    while week <= shown.end and len(weeks) < 60 * 5:
        weeks.append(YearWeek(week, checkins.get(week, 0), completed.get(week, 0), week > today))
        week += timedelta(days=7)
    return YearStrip(shown.person, shown.start, shown.end, weeks)


def year_strip_svg(strip: YearStrip) -> str:
    """One column per week: a bar for check-ins, a diamond per completed milestone, an empty
    past week marked with a small cross (a gap), future weeks left blank."""
    width, height, cell = 14 * len(strip.weeks) + 80, 96, 14
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        ' class="chart strip" role="img"'
        f' aria-label="Weekly check-ins and completed milestones of {escape(strip.person)}'
        f' from {strip.start} to {strip.end}">',
        f"<title>{escape(strip.person)}: check-ins and milestones by week</title>",
    ]
    top = max([w.checkins for w in strip.weeks] + [1])
    for index, week in enumerate(strip.weeks):
        x = 72 + index * cell
        label = f"week of {week.week_start}: {week.checkins} check-ins, {week.completed} completed"
        if week.future:
            parts.append(
                f'<rect class="future" x="{x}" y="56" width="{cell - 2}" height="2">'
                f"<title>{label}</title></rect>"
            )
            continue
        if week.checkins == 0 and week.completed == 0:
            parts.append(
                f'<g class="gap"><title>{label} (a gap)</title>'
                f'<line x1="{x + 3}" y1="50" x2="{x + 9}"'
                f' y2="56"/><line x1="{x + 9}" y1="50" x2="{x + 3}" y2="56"/></g>'
            )
        if week.checkins:
            bar = round(40 * week.checkins / top, 1)
            parts.append(
                f'<rect class="checkins" x="{x}" y="{58 - bar:.1f}" width="{cell - 2}"'
                f' height="{bar}"><title>{label}</title></rect>'
            )
        for n in range(min(week.completed, 3)):
            cy = 68 + n * 9
            parts.append(
                f'<path class="completed" d="M{x + 6} {cy - 4} L{x + 10} {cy} L{x + 6} {cy + 4}'
                f' L{x + 2} {cy} Z"><title>{label}</title></path>'
            )
        if week.week_start.day <= 7:
            parts.append(f'<text class="axis" x="{x}" y="10">{week.week_start:%b}</text>')
    parts.append('<text class="axis" x="0" y="44">check-ins</text>')
    parts.append('<text class="axis" x="0" y="72">done</text>')
    parts.append("</svg>")
    return "".join(parts)
