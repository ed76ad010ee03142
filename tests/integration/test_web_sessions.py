"""The team page over HTTP on both account/store backends: one-time links, sessions, CSRF,
rotation, what the pages show each person, and kudos (judged, written once, never forged)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any, cast

import httpx
import pytest_asyncio

from events import bodies as b
from server.accounts import new_credentials
from tests.http_world import NOW, World, backend, create_app, location, world
from tests.services import EventMaker

__all__ = ["backend", "location", "world"]


@pytest_asyncio.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast(Any, create_app(world.ctx)))
    async with httpx.AsyncClient(transport=transport, base_url="http://milepost") as test_client:
        yield test_client


async def link_for(client: httpx.AsyncClient, world: World, person: str) -> str:
    response = await client.post("/auth/links", headers=world.auth(person))
    assert response.status_code == 201, response.text
    url = str(response.json()["url"])
    assert url.startswith("http://milepost/signin/")
    return url.removeprefix("http://milepost")


async def sign_in(client: httpx.AsyncClient, world: World, person: str) -> str:
    """Sign in through a one-time link; returns the page's CSRF token."""
    response = await client.get(await link_for(client, world, person))
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Max-Age=" in cookie
    board = await client.get("/t/growth")
    assert board.status_code == 200, board.text
    found = re.search(r'name="csrf-token" content="([^"]+)"', board.text)
    assert found is not None
    return found.group(1)


async def stored(world: World) -> int:
    return await world.store.count()


def completion_of(world: World, marker: str) -> str:
    state = world.ctx.follower.state
    for event_id, event in state.events.items():
        body = event.body
        if isinstance(body, b.MilestoneCompleted) and body.did.startswith(marker):
            return event_id
    raise AssertionError(marker)


# --- sign-in ----------------------------------------------------------------------------


async def test_a_one_time_link_signs_in_once_and_the_board_shows_what_the_api_shows(
    client: httpx.AsyncClient, world: World
) -> None:
    link = await link_for(client, world, "carol")
    first = await client.get(link)
    assert first.status_code == 200 and "page-signed-in" in first.text
    board = await client.get("/t/growth")
    assert "page-board" in board.text and "ZZTEAM objective" in board.text
    assert "ZZPRIV" not in board.text and "ZZPART" not in board.text
    # The JSON twin's board is the API's board, byte for byte the same data.
    twin = (await client.get("/t/growth/board.json")).json()["board"]
    api = (await client.get("/teams/growth/board", headers=world.auth("carol"))).json()
    assert twin == api and api["health"]

    # The same link again: a clear page, nobody signed in.
    fresh = httpx.AsyncClient(transport=client._transport, base_url="http://milepost")
    async with fresh:
        again = await fresh.get(link)
        assert again.status_code == 401 and "page-problem" in again.text
        assert "milepost web" in again.text
        assert "milepost_session=" not in again.headers.get("set-cookie", "")
        assert (await fresh.get("/t/growth")).status_code == 401


async def test_an_expired_link_and_a_wrong_token_sign_nobody_in(
    client: httpx.AsyncClient, world: World
) -> None:
    link = await link_for(client, world, "carol")
    world.ctx.clock = lambda: NOW + timedelta(minutes=6)
    expired = await client.get(link)
    assert expired.status_code == 401 and "cannot be used" in expired.text
    assert (await client.get("/t/growth")).status_code == 401
    assert (await client.get("/signin/not-a-real-token-at-all-xxxxxxxx")).status_code == 401

    form = await client.get("/signin")
    nonce = re.search(r'name="signin" value="([^"]+)"', form.text)
    assert nonce is not None
    wrong = await client.post("/signin", data={"signin": nonce.group(1), "token": "carol.nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    # Without the sign-in form's nonce (a cross-site post): refused before the token is read.
    forged = await client.post("/signin", data={"signin": "forged", "token": world.tokens["carol"]})
    assert forged.status_code == 403
    nonce = re.search(r'name="signin" value="([^"]+)"', wrong.text)  # the form, shown again
    assert nonce is not None
    right = await client.post(
        "/signin", data={"signin": nonce.group(1), "token": world.tokens["carol"]}
    )
    assert right.status_code == 200 and (await client.get("/t/growth")).status_code == 200


async def test_rotation_ends_the_session_and_signout_too(
    client: httpx.AsyncClient, world: World
) -> None:
    csrf = await sign_in(client, world, "carol")
    creds = new_credentials("carol", bcrypt_rounds=4)
    # What `milepost-server person rotate` does.
    await world.accounts.rotate("carol", creds.nats_password_hash, creds.token_hash)
    await world.accounts.end_web_sessions("carol")
    after = await client.get("/t/growth")
    assert after.status_code == 401 and "rotated" in after.text

    world.tokens["carol"] = creds.api_token
    csrf = await sign_in(client, world, "carol")
    assert (await client.post("/signout", data={"csrf": "wrong"})).status_code == 403
    assert (await client.get("/t/growth")).status_code == 200
    assert (await client.post("/signout", data={"csrf": csrf})).status_code == 200
    assert (await client.get("/t/growth")).status_code == 401


async def test_a_session_from_before_a_rotation_fails_even_if_the_row_survives(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world, "carol")
    creds = new_credentials("carol", bcrypt_rounds=4)
    await world.accounts.rotate("carol", creds.nats_password_hash, creds.token_hash)
    assert (await client.get("/t/growth")).status_code == 401


async def test_pages_are_404_where_the_api_is(client: httpx.AsyncClient, world: World) -> None:
    for path in ("/t/growth", "/t/growth/feed/live", "/t/growth/board.json", "/p/alice"):
        assert (await client.get(path)).status_code == 401  # not signed in yet
    await sign_in(client, world, "carol")
    assert (await client.get("/t/ops")).status_code == 404
    assert (await client.get("/p/dave")).status_code == 404
    person = await client.get("/p/alice")
    assert person.status_code == 200 and "ZZTEAM journal entry" in person.text
    assert "ZZPRIV" not in person.text and "ZZPART" not in person.text
    drift = await client.get("/t/growth/drift")
    assert drift.status_code == 200 and "page-drift" in drift.text and "ZZPRIV" not in drift.text
    markdown = await client.get("/p/alice/review.md")
    assert markdown.status_code == 200 and "ZZTEAM did" in markdown.text
    assert "ZZPRIV" not in markdown.text


# --- kudos --------------------------------------------------------------------------------


async def test_kudos_need_the_sessions_csrf_token_and_write_nothing_without_it(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world, "carol")
    completion = completion_of(world, "ZZTEAM")
    before = await stored(world)
    missing = await client.post("/t/growth/kudos", data={"completion": completion})
    forged = await client.post("/t/growth/kudos", data={"completion": completion, "csrf": "x"})
    assert missing.status_code == forged.status_code == 403
    assert "Nothing was written" in forged.text
    assert await stored(world) == before


async def test_kudos_once_per_person_never_on_hidden_or_own_completions(
    client: httpx.AsyncClient, world: World
) -> None:
    csrf = await sign_in(client, world, "carol")
    team_done = completion_of(world, "ZZTEAM")
    private_done = completion_of(world, "ZZPRIV")
    before = await stored(world)
    given = await client.post(
        "/t/growth/kudos",
        data={"completion": team_done, "csrf": csrf},
        headers={"Accept": "application/json"},
    )
    assert given.status_code == 200, given.text
    assert given.json() == {"completion": team_done, "kudos": ["carol"]}
    assert await stored(world) == before + 1
    again = await client.post("/t/growth/kudos", data={"completion": team_done, "csrf": csrf})
    assert again.status_code == 422 and "already" in again.text
    hidden = await client.post("/t/growth/kudos", data={"completion": private_done, "csrf": csrf})
    assert hidden.status_code == 422 and "can see" in hidden.text
    assert await stored(world) == before + 1
    # The kudos is in the feed (API and page) and counted in alice's review.
    feed = (await client.get("/teams/growth/feed", headers=world.auth("alice"))).json()
    kinds = [item["kind"] for item in feed["items"]]
    assert "kudos.given" in kinds
    done = next(i for i in feed["items"] if i["id"] == team_done)
    assert done["kudos"] == ["carol"]
    review = (
        await client.get("/people/alice/review?from=2026-01-01", headers=world.auth("alice"))
    ).json()
    assert review["kudos_received"] == 1

    own = httpx.AsyncClient(transport=client._transport, base_url="http://milepost")
    async with own:
        alice_csrf = await sign_in(own, world, "alice")
        refused = await own.post(
            "/t/growth/kudos", data={"completion": team_done, "csrf": alice_csrf}
        )
        assert refused.status_code == 422 and "your own" in refused.text
    assert await stored(world) == before + 1


# --- private items and pauses shape no one else's view -------------------------------------


async def test_a_teammate_sees_no_load_or_pause_derived_from_alice_s_private_items(
    client: httpx.AsyncClient, world: World
) -> None:
    # alice piles ten more open milestones under her private objective, adds a key result
    # to her team objective and declares a pause spanning her team milestone's due date.
    state = world.ctx.follower.state
    objectives = {
        body.title: event_id
        for event_id, event in state.events.items()
        if isinstance(body := event.body, b.ObjectiveCreated) and event.actor == "alice"
    }
    make = EventMaker()
    key_result = make(
        "alice",
        b.KeyResultAdded(
            objective=objectives["ZZTEAM objective"], title="ZZTEAM signups", start=0, target=10
        ),
    )
    piled = [
        make(
            "alice",
            b.MilestonePlanned(title=f"ZZPRIV pile {i}", objective=objectives["ZZPRIV objective"]),
        )
        for i in range(10)
    ]
    pause = make("alice", b.PauseDeclared(starts_on=date(2026, 3, 5), ends_on=date(2026, 3, 15)))
    await world.append([key_result, *piled, pause])

    def load(signals: list[dict[str, Any]]) -> dict[str, str]:
        return {
            s["kind"]: s["explanation"]
            for s in signals
            if s["owner"] == "alice" and s["kind"] in ("overload", "underplanned", "slowdown")
        }

    # The API: alice sees her whole load, carol (teammate) and erin (teammate and partner)
    # only what they may see; neither sees a private id nor the pause.
    hidden = (
        {e.id for e in piled}
        | {pause.id}
        | set(objectives.values())
        - {
            objectives["ZZTEAM objective"],
            objectives["ZZPART objective"],
        }
    )
    expected = {
        "alice": {"overload": "13 open milestones in 2026-Q1 (more than 9)"},
        "carol": {"underplanned": "1 open milestone in 2026-Q1 (fewer than 4)"},
        "erin": {"underplanned": "2 open milestones in 2026-Q1 (fewer than 4)"},
    }
    for person, want in expected.items():
        api = await client.get("/teams/growth/drift", headers=world.auth(person))
        assert api.status_code == 200, api.text
        assert load(api.json()["signals"]) == want, person
        if person != "alice":
            assert "ZZPRIV" not in api.text and "paused" not in api.text
            assert not any(i in api.text for i in hidden), person

    # The team page and the person page show carol the same.
    await sign_in(client, world, "carol")
    page = await client.get("/t/growth/drift.json")
    assert page.status_code == 200, page.text
    signals = [s for group in page.json()["groups"] for s in group["signals"]]
    assert load(signals) == expected["carol"]
    person_page = await client.get("/p/alice/page.json")
    assert person_page.status_code == 200, person_page.text
    assert not any(d["kind"] == "overload" for d in person_page.json()["review"]["drift"])
    for text in (page.text, person_page.text, (await client.get("/t/growth")).text):
        assert "ZZPRIV" not in text and "paused" not in text
    # carol's board: alice's team milestone is overdue (due 2026-03-10), her pause unseen;
    # her burn-up chart draws no pause.
    board = (await client.get("/t/growth/board.json")).json()["board"]
    late = next(
        m["id"]
        for member in board["members"]
        for o in member["objectives"]
        for m in o["milestones"]
        if m["title"] == "ZZTEAM late milestone"
    )
    assert board["health"][late]["reason"].startswith("drift alert (overdue): due 2026-03-10;")
    chart = await client.get(f"/t/growth/kr/{key_result.id}/chart.json")
    assert chart.status_code == 200, chart.text
    assert chart.json()["pauses"] == []

    # alice's own page counts her pause: the due date moves by its 11 days.
    mine = httpx.AsyncClient(transport=client._transport, base_url="http://milepost")
    await sign_in(mine, world, "alice")
    own = (await mine.get("/t/growth/board.json")).json()["board"]
    assert "overdue" not in own["health"][late]["signals"]  # due 2026-03-21 with the pause
    own_chart = (await mine.get(f"/t/growth/kr/{key_result.id}/chart.json")).json()
    assert own_chart["pauses"] == [["2026-03-05", "2026-03-15"]]
    await mine.aclose()
