"""The lookup API (Starlette): the feed asks which posts to show a user.

    GET /post/recommendations/?id=<user id>&time=<ISO datetime>&limit=<1..100, default 5>&offset=<default 0>
    -> {"exp_group": "control"|"test", "recommendations": [{"id", "text", "topic"}, ...]}

A known user's posts are a lookup in the current snapshot's precomputed lists (the bucket of the
requested hour); a user in the source's ``user_data`` but not in the snapshot (signed up after the
last batch; the API reads those every RECSYS_RELOAD_SECONDS) is scored on the fly by what serves
their group's fresh users (its model, or the baseline the nightly gate chose instead). The response
carries the model version (``X-Model-Version``), what ranked it (``X-Served-By``: a model kind or a
baseline), the snapshot (``X-Snapshot``) and a request id (``X-Request-Id``); each one is logged as
an exposure. Every error is JSON, ``{"error": <message>, "parameter": <name>}`` (``parameter`` only
when one is at fault): 422 for a bad parameter, 404 for an unknown user or path, 405 for a wrong
method, 414 for a query string over MAX_QUERY_BYTES, 503 while no snapshot is loaded. The
recommendations path answers with or without its trailing slash; no path redirects. ``/openapi.json``
(built from the handlers' docstrings) describes the parameters as enforced and every response body.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import re
import time
import types
from urllib.parse import unquote_plus

import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from api.snapshots import SnapshotWatcher
from recsys.exposures import ExposureLog

log = logging.getLogger(__name__)

MAX_LIMIT = 100
MAX_OFFSET = 10_000  # deeper than any precomputed list (RECSYS_TOP_K); past the list the answer is empty
# Far above any real query; also keeps every value under int()'s 4,300-digit limit. uvicorn itself
# refuses a request line over about 64 KB (a plain-text 400) before the app sees it.
MAX_QUERY_BYTES = 4096
ASCII_INTEGER = re.compile(r"-?[0-9]+")  # int() would also take spaces, "+", "_" and non-ASCII digits
# Inside what a pandas timestamp holds (1677..2262), which scores a fresh user; the OpenAPI pattern
# of `time` states the same years.
YEARS = range(1700, 2200)
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {"type": "string"},
                   "parameter": {"type": "string", "enum": ["id", "time", "limit", "offset"]}},
}  # fmt: skip
POST_SCHEMA = {
    "type": "object", "required": ["id", "text", "topic"], "additionalProperties": False,
    "properties": {"id": {"type": "integer"}, "text": {"type": "string"}, "topic": {"type": "string"}},
}  # fmt: skip
RECOMMENDATIONS_SCHEMA = {
    "type": "object", "required": ["exp_group", "recommendations"], "additionalProperties": False,
    "properties": {"exp_group": {"type": "string", "enum": ["control", "test"]},
                   "recommendations": {"type": "array", "maxItems": MAX_LIMIT, "items": POST_SCHEMA}},
}  # fmt: skip
HEALTH_SCHEMA = {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok", "failing"]}, "exposures": {"type": "object"}},
}  # fmt: skip
NULLABLE_TEXT = {"type": "string", "nullable": True}
READY_SCHEMA = {
    "type": "object", "required": ["ready", "snapshot", "models_version", "group_methods", "fresh_methods"],
    "properties": {
        "ready": {"type": "boolean", "enum": [True]}, "snapshot": {"type": "string"},
        "models_version": {"type": "string"}, "group_models": {"type": "object"}, "group_methods": {"type": "object"},
        "fresh_methods": {"type": "object"}, "users": {"type": "integer"}, "loaded_at": {"type": "string"},
        "fresh_users": {"type": "integer"}, "last_error": NULLABLE_TEXT, "source_error": NULLABLE_TEXT,
        "exposures": {"type": "object"},
    },
}  # fmt: skip
NOT_READY_SCHEMA = {
    "type": "object", "required": ["ready", "reason"],
    "properties": {"ready": {"type": "boolean", "enum": [False]}, "reason": {"type": "string"},
                   "exposures": {"type": "object"}},
}  # fmt: skip
schemas = SchemaGenerator({
    "openapi": "3.0.0", "info": {"title": "recsys lookup API", "version": "1"},
    "components": {"schemas": {"Error": ERROR_SCHEMA, "Recommendations": RECOMMENDATIONS_SCHEMA,
                               "Health": HEALTH_SCHEMA, "Ready": READY_SCHEMA, "NotReady": NOT_READY_SCHEMA}},
})  # fmt: skip


class BadParameter(ValueError):
    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


class EncodedJSON(Response):
    """A 200 response whose JSON body and headers are already bytes: the hot path builds nothing else."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code, self.body, self.background = 200, body, None
        self.raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *raw_headers]  # fmt: skip


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (an unknown path, a wrong method) in the API's error shape."""
    if exc.status_code == 404:
        message = f"no such path {request.url.path}: see /openapi.json"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed here (allowed: {exc.headers['Allow']})"
    else:
        message = exc.detail
    response = _error(exc.status_code, message)
    response.headers.update(exc.headers or {})  # 405's Allow
    return response


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug's answer; the traceback goes to the server's log, not to the client."""
    return _error(500, "internal server error")


def query_values(query_string: bytes) -> dict[str, str]:
    """The parameters of a raw query string, decoded as Starlette's ``request.query_params`` decodes
    them (a repeated name: its last value). A plain split, unquoting only what is quoted: about 2 µs
    for a typical request, where building ``QueryParams`` takes about 15 (timeit, this machine)."""
    values = {}
    for part in query_string.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        values[name] = value
    return values


def parse_query(params: dict[str, str]) -> tuple[int, dt.datetime, int, int]:
    """(user id, time as naive UTC, limit, offset) from the query parameters, or BadParameter."""
    raw_id = params.get("id")
    if raw_id is None or raw_id.strip() == "":
        raise BadParameter("id", "the query parameter id (a user id) is required")
    user_id = _ascii_integer("id", raw_id)
    if not -(2**63) <= user_id < 2**63:
        raise BadParameter("id", f"id must be a 64-bit integer, got {raw_id!r}")
    when = _parse_time(params.get("time"))
    limit, offset = _bounded_int(params, "limit", 5, 1, MAX_LIMIT), _bounded_int(params, "offset", 0, 0, MAX_OFFSET)
    return user_id, when, limit, offset


def _ascii_integer(name: str, raw: str) -> int:
    if not ASCII_INTEGER.fullmatch(raw):
        raise BadParameter(name, f"{name} must be an integer (ASCII digits, an optional leading -), got {raw!r}")
    return int(raw)


def _parse_time(raw: str | None) -> dt.datetime:
    """The requested time as naive UTC (now when absent or empty), or BadParameter."""
    if raw is None or raw == "":
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise BadParameter("time", f"time must be an ISO 8601 datetime, got {raw!r}") from None
    # Checked as written, before the UTC conversion, which could overflow at year 1 or 9999.
    if when.year not in YEARS:
        raise BadParameter("time", f"time must lie in the years {YEARS.start} to {YEARS.stop - 1}, got {raw!r}")
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def _bounded_int(params, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    value = default if raw is None else _ascii_integer(name, raw)
    if not low <= value <= high:
        raise BadParameter(name, f"{name} must be between {low} and {high}, got {value}")
    return value


def create_app(settings) -> Starlette:
    watcher = SnapshotWatcher(settings)
    exposures: ExposureLog | None = None
    # Request ids: a random prefix per process and a counter (cheaper than a uuid per request).
    request_ids = types.SimpleNamespace(prefix=f"{os.urandom(6).hex()}-", counter=itertools.count())

    async def recommendations(request: Request) -> Response:
        """
        summary: The posts to show a user (the path answers with or without its trailing slash)
        parameters:
          - name: id
            in: query
            required: true
            description: the user id, ASCII digits with an optional leading -
            schema: {type: integer, format: int64, minimum: -9223372036854775808, maximum: 9223372036854775807,
                     pattern: '^-?[0-9]+$'}
          - name: time
            in: query
            required: false
            description: when the feed is shown, ISO 8601, in the years 1700 to 2199; absent or empty, now
            schema: {type: string, format: date-time, pattern: '^(1[7-9]|2[01])[0-9]{2}'}
          - name: limit
            in: query
            required: false
            schema: {type: integer, minimum: 1, maximum: 100, default: 5, pattern: '^-?[0-9]+$'}
          - name: offset
            in: query
            required: false
            description: "skip this many of the user's ranked posts: the next page of a scrolling feed"
            schema: {type: integer, minimum: 0, maximum: 10000, default: 0, pattern: '^-?[0-9]+$'}
        responses:
          200:
            description: the posts, best first
            headers:
              X-Model-Version: {description: the published models version, schema: {type: string}}
              X-Served-By: {description: 'what ranked the posts: a model kind or a baseline', schema: {type: string}}
              X-Snapshot: {description: the snapshot served, schema: {type: string}}
              X-Request-Id: {description: the exposure logged for this answer, schema: {type: string}}
            content: {application/json: {schema: {$ref: '#/components/schemas/Recommendations'}}}
          404:
            description: unknown user
            content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}
          414:
            description: the query string is longer than 4096 bytes
            content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}
          422:
            description: a bad parameter, named in the error
            content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}
          503:
            description: no snapshot loaded yet
            content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}
        """
        if len(request.scope["query_string"]) > MAX_QUERY_BYTES:
            return _error(414, f"the query string is longer than {MAX_QUERY_BYTES} bytes")
        try:
            user_id, when, limit, offset = parse_query(query_values(request.scope["query_string"]))
        except BadParameter as bad:
            return _error(422, str(bad), parameter=bad.parameter)
        current = watcher.current  # one snapshot for the whole request, whatever swaps meanwhile
        if current is None:
            return _error(503, f"not ready: {watcher.last_error or 'loading the snapshot'}")
        found = current.lookup(user_id, when.hour, limit, offset)
        fresh = found is None
        if fresh:
            user = watcher.fresh_users.get(user_id)
            if user is None:
                return _error(404, f"unknown user id {user_id}", parameter="id")
            rows = await run_in_threadpool(current.score_fresh, user, pd.Timestamp(when), limit, offset)
            group = current.group_of(user_id)
        else:
            rows, group = found
        served_by = (current.fresh_methods if fresh else current.group_methods)[group]
        request_id = f"{request_ids.prefix}{next(request_ids.counter):x}"
        body = current.render(group, rows)
        served_at = time.time_ns() // 1000  # microseconds: a tenth of the cost of a datetime
        if request.method != "HEAD":  # Starlette answers HEAD with the GET handler; it shows nobody anything
            exposures.append((request_id, user_id, group, current.models_version, current.id, fresh, when,
                              served_at, [current.post_ids[row] for row in rows], served_by))  # fmt: skip
        headers = [(b"x-model-version", current.models_version.encode()), (b"x-served-by", served_by.encode()),
                   (b"x-snapshot", current.id.encode()), (b"x-request-id", request_id.encode())]  # fmt: skip
        return EncodedJSON(body, headers)

    async def health(request: Request) -> Response:
        """
        summary: The process is up and its exposure log is being written
        responses:
          200:
            description: '{"status": "ok", "exposures": {"healthy": true, "pending", "dropped", ...}}'
            content: {application/json: {schema: {$ref: '#/components/schemas/Health'}}}
          503:
            description: 'exposure log writes are failing, retried: {"status": "failing", "exposures": ...}'
            content: {application/json: {schema: {$ref: '#/components/schemas/Health'}}}
        """
        logged = exposures.status()
        return JSONResponse({"status": "ok" if logged["healthy"] else "failing", "exposures": logged},
                            status_code=200 if logged["healthy"] else 503)  # fmt: skip

    async def ready(request: Request) -> Response:
        """
        summary: A snapshot is loaded, and which
        responses:
          200:
            description: "ready: the snapshot, models version, what serves each group (group_methods, ...)"
            content: {application/json: {schema: {$ref: '#/components/schemas/Ready'}}}
          503:
            description: not ready, and why
            content: {application/json: {schema: {$ref: '#/components/schemas/NotReady'}}}
        """
        current = watcher.current
        if current is None:
            return JSONResponse({"ready": False, "reason": watcher.last_error or "loading",
                                 "exposures": exposures.status()}, status_code=503)  # fmt: skip
        return JSONResponse({
            "ready": True, "snapshot": current.id, "models_version": current.models_version,
            "group_models": current.manifest["group_models"], "group_methods": current.group_methods,
            "fresh_methods": current.fresh_methods,
            "users": len(current.user_ids),
            "loaded_at": dt.datetime.fromtimestamp(current.loaded_at, dt.UTC).isoformat(timespec="seconds"),
            "fresh_users": len(watcher.fresh_users), "last_error": watcher.last_error,
            "source_error": watcher.source_error, "exposures": exposures.status(),
        })  # fmt: skip

    async def openapi(request: Request) -> Response:
        return JSONResponse(schemas.get_schema(routes=request.app.routes))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        nonlocal exposures
        exposures = ExposureLog(settings.exposures_dir, max_pending=settings.exposure_max_pending)
        await run_in_threadpool(watcher.start)
        try:
            yield
        finally:
            watcher.stop()
            exposures.close()

    routes = [
        Route("/post/recommendations/", recommendations),
        Route("/post/recommendations", recommendations, include_in_schema=False),  # the same, not a 307
        Route("/health", health),
        Route("/ready", ready),
        Route("/openapi.json", openapi, include_in_schema=False),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: server_error})  # fmt: skip
    app.router.redirect_slashes = False  # a redirect answers with an empty body; an unknown path is a JSON 404
    app.state.watcher = watcher
    return app
