"""The two hot routes of ``recbench serve`` (``GET`` and ``POST /recommend``) answered in plain ASGI.

A recommendation costs a fraction of a millisecond of model work on a MovieLens-sized catalogue; the
framework's per-request machinery (request objects, dependency solving, pydantic validation, a hop to
the thread pool and back, its middleware stack) used to cost more than that. :class:`HotRoutes` sits in
front of the FastAPI app and answers the *well-formed* requests of these two routes itself, on the event
loop (the work is CPU-bound and holds the GIL: a thread hop only adds latency). Anything it does not
recognise as well-formed (a missing or non-integer ``k``, an unknown field, a value of another type,
malformed JSON, a body that is not ``application/json``) goes on, untouched, to the FastAPI route of the
same path, which validates it and answers the usual one-line 422; so the routes, their OpenAPI
documentation and every error message stay FastAPI's, and the answers of both paths are produced by
the same :class:`~recbench.service.live.LiveRun` call and encoded as FastAPI's ``JSONResponse`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from recbench.errors import RecbenchError
from recbench.service.live import LiveRun, ServiceError

_SESSION_FIELDS = frozenset({"history", "k", "exclude", "ratings"})
_HEADERS = [(b"content-type", b"application/json")]


def encode(content: Any) -> bytes:
    """``content`` as FastAPI's ``JSONResponse`` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


def error_body(exc: Exception) -> tuple[int, dict[str, str]]:
    """Status and ``{"error": ...}`` body of a refused request (as the app's exception handlers)."""
    if isinstance(exc, ServiceError):
        return exc.status, {"error": str(exc)}
    return 422, {"error": " ".join(str(exc).split())}


def _plain_int(text: str) -> int | None:
    """``text`` as an int when it is a plain decimal (what the route's ``int`` query parameter accepts
    without coercion); else ``None``."""
    digits = text[1:] if text[:1] == "-" else text
    return int(text) if digits.isascii() and digits.isdigit() else None


def user_query(query: bytes) -> tuple[str, int] | None:
    """``(user, k)`` of a well-formed ``GET /recommend`` query string, else ``None``."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    args = dict(pairs)
    if len(args) != len(pairs) or "user" not in args or not args.keys() <= {"user", "k"}:
        return None
    k = _plain_int(args["k"]) if "k" in args else 10
    return None if k is None else (args["user"], k)


def _ids(values: Any) -> bool:
    return isinstance(values, list) and all(type(v) is int or type(v) is str for v in values)


def session_body(body: bytes) -> tuple[list[Any], int, list[Any], list[float] | None] | None:
    """``(history, k, exclude, ratings)`` of a well-formed ``POST /recommend`` body, else ``None``."""
    try:
        req = json.loads(body)
    except ValueError:
        return None
    if not isinstance(req, dict) or not req.keys() <= _SESSION_FIELDS:
        return None
    history, k, exclude = req.get("history"), req.get("k", 10), req.get("exclude", [])
    ratings = req.get("ratings")
    if not (_ids(history) and type(k) is int and _ids(exclude)):
        return None
    if ratings is not None:
        if not isinstance(ratings, list) or not all(type(r) in (int, float) for r in ratings):
            return None
        ratings = [float(r) for r in ratings]
    return history, k, exclude, ratings


class HotRoutes:
    """ASGI wrapper answering well-formed ``GET``/``POST /recommend`` requests (see the module docstring)."""

    def __init__(self, app: Any, live: LiveRun) -> None:
        self.app, self.live = app, live

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/recommend":
            method = scope["method"]
            if method == "GET":
                args = user_query(scope["query_string"])
                if args is not None:
                    await _answer(send, lambda: {"user": args[0], "items": self.live.recommend_user(*args)})
                    return
            elif method == "POST":
                messages, body = await _read_body(receive)
                json_body = _content_type(scope) == b"application/json"
                req = session_body(body) if json_body and body is not None else None
                if req is not None:
                    await _answer(send, lambda: {"items": self.live.recommend_session(*req)})
                    return

                async def replay() -> dict:
                    return messages.pop(0) if messages else await receive()

                await self.app(scope, replay, send)
                return
        await self.app(scope, receive, send)


def _content_type(scope: dict) -> bytes:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


async def _read_body(receive: Any) -> tuple[list[dict], bytes | None]:
    """The request's messages and its whole body (``None`` when the client went away first)."""
    messages: list[dict] = []
    parts: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(parts)


async def _answer(send: Any, work: Callable[[], dict[str, Any]]) -> None:
    """Run ``work`` and send its JSON, or the one-line error of a refused request."""
    try:
        status, content = 200, work()
    except (ServiceError, RecbenchError) as exc:
        status, content = error_body(exc)
    body = encode(content)
    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
