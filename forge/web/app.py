"""The dashboard's web application (Starlette): pages, their JSON, and the live stream.

Pages are one HTML template shipped in `forge/web/static/` with one vanilla JS file and one
stylesheet (nothing from the internet). Their data comes from:

* `/api/fleet`: the fleet now (the live state, folded forward from the log);
* `/api/tasks?state=S&runtime=R&q=TEXT`: tasks with filters;
* `/api/task/ID`, `/api/task/ID/output?attempt=N`, `/api/task/ID/diff`: one task, its
  timeline, an attempt's output (a transcript for claude) and its branch's diff;
* `/api/at?until=MS|ID|TIME`: the whole fleet replayed at a moment (the time slider), with
  the summary `forge events replay --until` prints for it;
* `/api/stream`: server-sent events, one per new log entry, from the log's blocking read.

The application only reads the log: it works whether a daemon runs or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import click
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from events.errors import ForgeError
from events.redact import redact_value
from events.replay import replay
from events.state import FleetState, TaskState
from events.store import EventStore
from events.task_index import TaskIndex
from forge.cli.events_cmd import parse_moment
from forge.cli.eventview import task_history
from forge.settings import Settings
from forge.web.auth import TokenGate
from forge.web.live import LiveFleet
from forge.web.task_files import task_diff, task_output
from forge.web.views import fleet_view, moment_view, task_detail, task_rows

__all__ = ["create_app"]

KEEPALIVE_SECONDS = 15.0  # a comment line on an idle stream, so a dead page is noticed
_MS = re.compile(r"^\d{1,16}$")
# path -> (data-page, title) of the one page template; any other page is a task's
_PAGES = {"/": ("fleet", "Fleet"), "/tasks": ("tasks", "Tasks"), "/time": ("time", "Time travel")}
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@functools.cache
def _static(name: str) -> bytes:
    return resources.files("forge.web").joinpath("static", name).read_bytes()


@functools.cache
def _page(kind: str, title: str) -> bytes:
    """The page template for one kind of page (its script draws the rest)."""
    template = _static("page.html").decode()
    return template.replace("{page}", kind).replace("{title}", title).encode()


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(redact_value(data), status_code=status, headers=_SECURITY_HEADERS)


def _error(message: str, status: int) -> JSONResponse:
    return _json({"error": message}, status)


def _log_range(store: EventStore) -> dict[str, Any]:
    """The first and the last entry of the log (the time slider's ends)."""
    first = store.read_range("-", "+", count=1)
    last = store.last_id()
    return {
        "first_id": first[0].id if first else None,
        "last_id": last,
        "first_ms": int(first[0].id.split("-")[0]) if first else None,
        "last_ms": int(last.split("-")[0]) if last else None,
    }


def create_app(store: EventStore, settings: Settings, token: str, port: int | None) -> Starlette:
    """The dashboard over `store`'s log; every request must carry `token`."""
    live = LiveFleet(store)

    def page(request: Request) -> Response:
        kind, title = _PAGES.get(request.url.path, ("task", "Task"))
        return Response(_page(kind, title), media_type="text/html", headers=_SECURITY_HEADERS)

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return Response(_static(name), media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    def fleet(_: Request) -> JSONResponse:
        data = live.read(fleet_view)
        return _json({**data, "range": _log_range(store)})

    def tasks(request: Request) -> JSONResponse:
        q = request.query_params
        states = [s for s in q.getlist("state") if s]
        done = TaskIndex(store).finished()  # read before the lock: it is I/O

        def rows(state: FleetState) -> dict[str, Any]:
            every = [*state.tasks.values(), *(x for x in done if x.task_id not in state.tasks)]
            return task_rows(every, states, q.get("runtime") or None, q.get("q"))

        return _json(live.read(rows))

    def _task_or_none(task_id: str) -> TaskState | None:
        """The task, hot (from the live state) or finished (through the per-task index)."""
        hot, finished = live.read(lambda s: (s.tasks.get(task_id), task_id in s.finished))
        return TaskIndex(store).task(task_id) if hot is None and finished else hot

    def task(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        found = _task_or_none(task_id)
        if found is None:
            return _error(f"unknown task id {task_id!r}", 404)
        return _json(task_detail(found, task_history(store, task_id)))

    def output(request: Request) -> JSONResponse:
        found = _task_or_none(request.path_params["task_id"])
        if found is None:
            return _error(f"unknown task id {request.path_params['task_id']!r}", 404)
        raw = request.query_params.get("attempt") or ""
        if raw and not raw.isdigit():
            return _error(f"attempt {raw[:20]!r} is not a number", 400)
        return _json(task_output(settings, found, int(raw[:9]) if raw else None))

    def branch_diff(request: Request) -> JSONResponse:
        found = _task_or_none(request.path_params["task_id"])
        if found is None:
            return _error(f"unknown task id {request.path_params['task_id']!r}", 404)
        return _json(task_diff(settings, found))

    def moment(request: Request) -> JSONResponse:
        text = (request.query_params.get("until") or "").strip()
        if not text:
            return _error("give until=MILLISECONDS, a stream id or a time", 400)
        try:
            until = text if _MS.match(text) else parse_moment(text)
        except click.BadParameter as e:
            return _error(e.format_message(), 400)
        state: FleetState = replay(store, until=until)[0]
        return _json({**moment_view(state), "until": text, "range": _log_range(store)})

    async def stream(request: Request) -> StreamingResponse:
        subscriber = live.subscribe(asyncio.get_running_loop())

        async def events() -> AsyncIterator[str]:
            try:
                position = live.read(lambda s: s.position)
                yield f"event: hello\ndata: {json.dumps({'position': position})}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(
                            subscriber.queue.get(), timeout=KEEPALIVE_SECONDS
                        )
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if message is None:
                        return
                    yield f"event: log\ndata: {json.dumps(redact_value(message))}\n\n"
            finally:
                live.unsubscribe(subscriber)

        headers = {**_SECURITY_HEADERS, "x-accel-buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(live.start)
        try:
            yield
        finally:
            await asyncio.to_thread(live.stop)

    routes = [
        Route("/", page),
        Route("/tasks", page),
        Route("/time", page),
        Route("/task/{task_id:path}", page),
        Route("/static/{name}", static),
        Route("/api/fleet", fleet),
        Route("/api/tasks", tasks),
        Route("/api/task/{task_id:path}/output", output),
        Route("/api/task/{task_id:path}/diff", branch_diff),
        Route("/api/task/{task_id:path}", task),
        Route("/api/at", moment),
        Route("/api/stream", stream),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TokenGate, token=token, port=port)],
        lifespan=lifespan,
        exception_handlers={ForgeError: _forge_error},
    )
    app.state.live = live
    return app


async def _forge_error(_: Request, exc: Exception) -> Response:
    """A ForgeError (the log unreachable, ...) as one line of JSON, status 503."""
    return _error(str(exc), 503)
