"""HTTP that cannot be parsed, answered with the JSON error body every other error has.

aiohttp answers a request it cannot parse (a header over 8 KiB, too many headers, a bad method
or `Content-Length`) itself, before any middleware, in plain text. INTERFACE §4 wants every error
body as `{"error": {...}}`: the console scripts' servers hand such requests to this handler. An
application mounted in another aiohttp server (INTERFACE §7) keeps that server's handling.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from entrypoints.http.errors import HTTP_CODES, error_response

MAX_REASON_CHARS = 200
"""aiohttp's reason may quote the request's bytes: a bounded part of it is enough to tell why."""


class JsonErrorRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a bug of ours: aiohttp's handling, traceback and all, with our body
            super().handle_error(request, status, exc, message)
            answer = error_response(status, "internal_error", "An unexpected error occurred")
        else:  # the client's: one WARNING line, not aiohttp's ERROR with a traceback
            if request.writer.output_size > 0:
                raise ConnectionError("Response is sent already, cannot send another response")
            reason = " ".join((message or "").split())[:MAX_REASON_CHARS]
            self.logger.warning("malformed HTTP request from %s: %s", request.remote, reason)
            answer = error_response(
                status,
                HTTP_CODES.get(status, "invalid_request"),
                "The request is not HTTP/1.1 this server can read",
                {"reason": reason} if reason else None,
            )
        answer.force_close()
        return answer


class JsonErrorServer(web.Server):
    """A Server whose connections use JsonErrorRequestHandler."""

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = JsonErrorRequestHandler  # same slots: only handle_error differs
        return handler


class JsonErrorAppRunner(web.AppRunner):
    """AppRunner serving malformed requests a JSON error body (see JsonErrorServer)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonErrorServer
        return server
