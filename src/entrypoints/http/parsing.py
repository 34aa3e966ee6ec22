"""Reading request bodies: JSON only, exact Decimal numbers, strict structure, 1 MiB at most."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web

from adapters.wire.converter import dumps, loads, structure_or_reject
from adapters.wire.http_json import REQUESTS
from domain.errors import InvalidRequest

T = TypeVar("T")

MAX_BODY_BYTES = 1024 * 1024
BODY_READ_TIMEOUT_S = 30.0
"""A body still arriving after this is refused (408): aiohttp waits for a body as long as the
client likes, so a client sending one byte now and then held a handler and its connection for
good (checked: still open after 150 s)."""


async def read_body(request: web.Request, cls: type[T], *, timeout_s: float = BODY_READ_TIMEOUT_S) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(headers={"Connection": "close"}) from None
    except web.RequestPayloadError as error:
        # e.g. `Content-Encoding: gzip` on bytes that are not gzip
        raise InvalidRequest.of_field(
            "body", "The request body could not be read", reason=str(error)
        ) from None
    return parse_body(raw, cls)


def parse_body(raw: bytes, cls: type[T]) -> T:
    """A JSON object structured into `cls`, or InvalidRequest naming the field(s) at fault."""
    if not raw.strip():
        raise InvalidRequest.of_field("body", "The request body is empty; a JSON object is expected")
    try:
        payload = loads(raw.decode("utf-8"), long_integers=True)
    except UnicodeDecodeError:
        raise InvalidRequest.of_field("body", "The request body is not UTF-8") from None
    except (ValueError, RecursionError) as error:
        raise InvalidRequest.of_field(
            "body", "The request body is not valid JSON", reason=str(error)
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequest.of_field("body", "The request body must be a JSON object")
    return structure_or_reject(REQUESTS, payload, cls)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(body), content_type="application/json")
