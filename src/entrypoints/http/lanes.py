"""Requests go first: the Redis commands of an HTTP request take the store's prompt lane."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.redis.client import prompt_lane

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def prompt_lane_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A caller waits on every command a request sends; an event consumer's batch has no caller
    waiting on it. See `adapters.redis.client.prompt_lane`."""
    with prompt_lane():
        return await handler(request)
