"""``sync``: push pending events, pull what you may see; ``--watch`` stays connected."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Annotated

from cyclopts import Parameter

from client import dates, render
from client.commands._common import Json
from client.session import Session, short_ref


def sync(
    *,
    watch: Annotated[
        bool, Parameter(negative=(), help="Stay connected: push as you log, pull on pokes.")
    ] = False,
    repush_after: Annotated[
        float | None,
        Parameter(help="Seconds before an unconfirmed pushed event is pushed again (600)."),
    ] = None,
    as_json: Json = False,
) -> int:
    """Send your events to the sync server and receive what you may see.

    Needs `milepost config server nats://HOST:4222` and `milepost config credentials FILE`.
    Example: milepost sync
    Example: milepost sync --watch
    """
    from client.sync import (
        Link,
        Summary,
        Syncer,
        SyncUnreachable,
        backoff_delays,
        endpoint,
        poll_interval,
        progress_for,
        repush_after_default,
    )

    after = repush_after_default() if repush_after is None else repush_after

    def show(summary: Summary) -> None:
        if as_json:
            render.emit_json(summary)
            return
        render.out(summary_line(summary))
        for refused in summary.refused:
            what = "refused for now, will retry" if refused.retry else "rejected"
            render.out(f"{what} {short_ref(refused.event_id)}: {refused.reason}")
        sys.stdout.flush()

    async def once(session: Session) -> int:
        link = Link(endpoint(session.meta))
        await link.open()
        try:
            syncer = Syncer(
                session.store,
                session.person,
                session.device,
                link,
                now=dates.now,
                repush_after=after,
                progress=progress_for(),
            )
            show(await syncer.sync_once())
        finally:
            await link.close()
        return 0

    async def forever(session: Session) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        target = endpoint(session.meta)
        delays = backoff_delays()
        notice = (
            f"watching {session.meta.get('server') or 'the sync server'} as"
            f" {session.person}@{session.device}: pushing what you log, pulling what others"
            " share. Press Ctrl-C to stop."
        )
        (sys.stderr if as_json else sys.stdout).write(notice + "\n")
        (sys.stderr if as_json else sys.stdout).flush()
        while not stop.is_set():
            link = Link(target, reconnect=True)
            try:
                await link.open()
                syncer = Syncer(
                    session.store,
                    session.person,
                    session.device,
                    link,
                    now=dates.now,
                    repush_after=after,
                    progress=progress_for(),
                )
                delays = backoff_delays()
                await syncer.watch(stop, show, poll=poll_interval())
            except SyncUnreachable as exc:
                delay = next(delays)
                sys.stderr.write(f"milepost: {exc.message}; retrying in {delay:g}s\n")
                sys.stderr.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            finally:
                await link.close()
        return 0

    async def go() -> int:
        # Threaded: the engine overlaps NATS round trips with the database's work.
        session = await Session.open(direct=False)
        try:
            return await (forever(session) if watch else once(session))
        finally:
            await session.close()

    return asyncio.run(go())


def summary_line(summary: object) -> str:
    """One sync round in words, naming only what happened."""
    pushed = getattr(summary, "pushed", 0)
    received = getattr(summary, "received", 0)
    confirmed = getattr(summary, "confirmed", 0)
    pending = getattr(summary, "pending", 0)
    rejected = getattr(summary, "rejected", 0)
    parts = [f"sent {pushed}", f"received {received}"]
    if confirmed:
        parts.append(f"{confirmed} confirmed by the server")
    if rejected:
        parts.append(f"{rejected} refused by the server")
    line = "synced: " + ", ".join(parts)
    if pending:
        line += f"; {pending} not yet confirmed (the next sync checks again)"
    return line
