"""A person's goal tree and review."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from projections.goals import GoalTree, goal_tree
from projections.review import Review, review, review_markdown
from projections.state import ProjectionState
from server.http.auth import SECURITY_SCHEME
from server.http.context import ServerContext, context_of
from server.http.errors import ERROR_RESPONSES
from server.http.services import (
    check_cycle,
    check_date,
    end_of_day,
    json_response,
    require_person,
    review_period,
)

Viewer = Request[str, str, Any]


async def _require_person(
    ctx: ServerContext, viewer: str, person: str, now: datetime
) -> ProjectionState:
    """``require_person``, then the state the person's views read; the partner check
    computes views, so it runs off the event loop."""
    directory = ctx.directory
    if viewer == person or directory.teams_of(viewer) & directory.teams_of(person):
        return await ctx.person_state(person)  # the cheap cases, decided here
    state = await ctx.person_state(person)
    await ctx.off_loop(lambda: require_person(state, viewer, person, now))
    return state


class PeopleController(Controller):
    """Per-person views, filtered for the caller."""

    path = "/people/{person:str}"
    tags = ["people"]  # noqa: RUF012 - Litestar reads these class attributes
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    responses = ERROR_RESPONSES

    @get("/goals", summary="A person's goal tree as the caller may see it")
    async def goals(
        self,
        request: Viewer,
        person: FromPath[str],
        as_of: Annotated[
            date | None, QueryParameter(description="Show what was known at the end of this day.")
        ] = None,
        cycle: Annotated[
            str,
            QueryParameter(
                description="Which objectives: `current` (cycles containing the day shown, the"
                " default), `all`, or one cycle such as 2026, 2026-H1, 2026-Q1, 2026-03."
            ),
        ] = "current",
    ) -> Response[GoalTree]:
        """The goal tree with progress; private items of others never appear."""
        ctx = context_of(request)
        viewer = request.user
        check_cycle(cycle)
        now = ctx.clock()
        if as_of is not None:
            now = min(now, end_of_day(check_date("as_of", as_of)))
        current = await _require_person(ctx, viewer, person, ctx.clock())

        def compute() -> GoalTree:
            state = current if as_of is None else ctx.state_as_of(current, now)
            return goal_tree(state, person, now, viewer=viewer, cycle=cycle)

        return json_response(await ctx.cached(("goals", viewer, person, as_of, cycle), compute))

    @get(
        "/review",
        summary="A person's record over a period (JSON or Markdown)",
        media_type="application/json",
    )
    async def review(
        self,
        request: Viewer,
        ctx: NamedDependency[ServerContext],
        person: FromPath[str],
        start: Annotated[
            date | None, QueryParameter(name="from", description="First day (default: 1 January).")
        ] = None,
        end: Annotated[
            date | None, QueryParameter(name="to", description="Last day (default: 31 December).")
        ] = None,
        format: Annotated[
            Literal["json", "markdown"], QueryParameter(description="json (default) or markdown.")
        ] = "json",
    ) -> Response[Review | str]:
        """Completed milestones, check-ins, observations, monthly activity, drift, calibration."""
        viewer = request.user
        now = ctx.clock()
        first, last = review_period(start, end, now.date())
        state = await _require_person(ctx, viewer, person, now)
        if format == "markdown":  # rendered in the worker thread too

            def markdown() -> bytes:
                result = review(state, person, first, last, now, viewer, ctx.settings)
                return review_markdown(result).encode()

            text = await ctx.cached(("review.md", viewer, person, first, last), markdown, raw=True)
            return Response(text.decode(), media_type="text/markdown; charset=utf-8")
        key = ("review", viewer, person, first, last)
        return json_response(
            await ctx.cached(
                key, lambda: review(state, person, first, last, now, viewer, ctx.settings)
            )
        )
