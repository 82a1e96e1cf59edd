"""The FastAPI app of ``recbench serve``: routes, request validation, limits and status codes.

Every route is a thin call into :class:`~recbench.service.live.LiveRun` (recommendations, events,
similar items, metadata) or :mod:`recbench.explanations`; no model logic lives here. Bad input is
always a 4xx with a one-line ``{"error": ...}`` body: unknown ids 404, out-of-range or malformed
values 422, a body over ``max_body_bytes`` 413, a model that cannot do what is asked 422.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from recbench.errors import RecbenchError
from recbench.service.fastpath import HotRoutes, error_body
from recbench.service.live import LiveRun, ServiceError

Id = int | str


class SessionRequest(BaseModel):
    """``POST /recommend``: an ad-hoc history (item ids, oldest first)."""

    model_config = ConfigDict(extra="forbid")
    history: list[Id] = Field(description="item ids, oldest first")
    k: int = Field(10, description="how many items")
    exclude: list[Id] = Field(default_factory=list, description="item ids never to recommend")
    ratings: list[float] | None = Field(None, description="one rating per history item (rating models)")


class ExplainRequest(BaseModel):
    """``POST /explain``: why an item is recommended for an ad-hoc history."""

    model_config = ConfigDict(extra="forbid")
    history: list[Id] = Field(description="item ids, oldest first")
    item: Id | None = Field(None, description="the item to explain (default: the top recommendation)")
    k: int = Field(10, description="contributions shown at most")
    ratings: list[float] | None = Field(None, description="one rating per history item (rating models)")


class InteractionRequest(BaseModel):
    """``POST /interactions``: one new event."""

    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id
    timestamp: int | None = Field(None, description="seconds; default: now")
    rating: float | None = None


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before it is parsed.

    A declared ``Content-Length`` is checked against the limit (the server reads exactly that many
    bytes, so a request within it passes on untouched, as does one without a body); a chunked body
    is counted while it is read, then handed on.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.limit:
                await _too_large(self.limit, send)
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:  # no body
            await self.app(scope, receive, send)
            return
        seen = 0
        chunks: list[dict] = []
        while True:  # read (bounded) the whole body, then hand it on
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await _too_large(self.limit, send)
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


async def _too_large(limit: int, send: Any) -> None:
    body = f'{{"error":"request body is larger than max_body_bytes={limit}"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(live: LiveRun) -> FastAPI:
    """The service over ``live`` (one loaded run and its interaction log)."""
    app = FastAPI(
        title="recbench serve",
        description=f"Recommendations from the run {live.run_dir} ({type(live.model).__name__}).",
    )
    app.state.live = live

    @app.exception_handler(ServiceError)
    @app.exception_handler(RecbenchError)
    async def _refused(request: Request, exc: Exception) -> JSONResponse:
        status, content = error_body(exc)
        return JSONResponse(content, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc)}, status_code=422)

    # Routes are plain functions, which FastAPI runs in its thread pool (POST /interactions waits for an
    # fsync there, not on the event loop). Well-formed GET/POST /recommend requests never reach these
    # routes: HotRoutes answers them on the event loop (see recbench/service/fastpath.py); the routes
    # below document them and answer the rest (validation errors included).
    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the run is loaded and its log open."""
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        """Model, dataset, training metrics, item count and limits."""
        return live.metadata()

    @app.get("/recommend", response_class=JSONResponse)
    def recommend_user(user: str = Query(...), k: int = Query(10)) -> JSONResponse:
        """Top-k for a known user (or one with posted events), excluding their history."""
        return JSONResponse({"user": user, "items": live.recommend_user(user, k)})

    @app.post("/recommend", response_class=JSONResponse)
    def recommend_session(req: SessionRequest) -> JSONResponse:
        """Top-k for an ad-hoc history, for models that score one without retraining."""
        return JSONResponse({"items": live.recommend_session(req.history, req.k, req.exclude, req.ratings)})

    @app.post("/interactions")
    def interactions(req: InteractionRequest) -> dict[str, Any]:
        """Append one event to the run's log (durable before this reply); it counts at once."""
        stamp = int(time.time()) if req.timestamp is None else req.timestamp
        event = live.add_event(str(req.user), req.item, stamp, req.rating)
        return {"seq": event.seq, "user": event.user, "item": event.item, "timestamp": event.timestamp}

    @app.get("/similar")
    def similar(item: str = Query(...), k: int = Query(10)) -> dict[str, Any]:
        """Items most similar to ``item``."""
        return {"item": item, "items": live.similar(item, k)}

    @app.get("/explain")
    def explain(user: str = Query(...), item: str | None = Query(None), k: int = Query(10)) -> dict[str, Any]:
        """Why ``item`` (default: the user's top recommendation) is recommended to ``user``; ``k``
        contributions at most."""
        return live.explain(user, item, k)

    @app.post("/explain")
    def explain_session(req: ExplainRequest) -> dict[str, Any]:
        """Why ``item`` (default: the top recommendation) is recommended for an ad-hoc history."""
        return live.explain_session(req.history, req.item, req.k, req.ratings)

    return _BodyLimit(HotRoutes(app, live), live.limits.max_body_bytes)  # type: ignore[return-value]
