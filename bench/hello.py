"""The HTTP baseline: an aiohttp JSON hello world, `python -m bench.hello --port P`.

It answers every path and method: reads the JSON body when there is one and answers a small
JSON document with 201, through the same event loop (uvloop where installed) and aiohttp server
as the services (no access log, as `order-service serve` runs).
"""

from __future__ import annotations

import argparse

from aiohttp import web

from entrypoints import event_loop


async def hello(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else None
    items = len(body.get("items", [])) if isinstance(body, dict) else 0
    return web.json_response({"hello": "world", "items": items}, status=201)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hello")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    factory = event_loop.loop_factory()
    loop = factory() if factory is not None else None
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
