"""The raw floor of an order: the I/O INTERFACE.md asks of one, with none of the services' logic.

    python -m bench.floor upstream --port P --redis URL --nats URL
    python -m bench.floor front --port P --upstream URL --redis URL --nats URL

Two processes, in the places of the two services, using the same libraries the same plain way
(aiohttp on uvloop, redis-py with hiredis, nats-py, orjson):

- `front` (the Order Service's place): `POST /api/v1/orders` reads the JSON body, asks
  `upstream` for its products in one HTTP call, stores the order with one Redis SET, publishes
  it on JetStream (`floor.order.created`, awaiting the PubAck) and answers 201 with it. A pull
  consumer applies each `floor.product.availability_changed` with a Redis SET and acks it.
- `upstream` (the Product Service's place): `POST /batch` answers the products of the ids with
  one Redis MGET. A pull consumer takes each `floor.order.created`, decrements the stock of its
  items in one Redis pipeline, publishes an availability change per item and acks.

Not done here, and done by the services: input validation, prices as Decimal, the idempotency
key, processed-event ids (a duplicate has no second effect), the outbox (no event lost when
NATS is away), version checks (the newest wins), retries, the circuit breaker, the cache
fallback, metrics, logs, correlation ids. So the floor answers "how fast could this I/O go
here", which is how close the targets can come: if the floor's ratio to the hello world is under
a target, no implementation of the same I/O on this machine reaches it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import traceback
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import nats.errors
import nats.js.errors
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext

from entrypoints import event_loop

ORDERS_STREAM = "FLOOR_ORDERS"
PRODUCTS_STREAM = "FLOOR_PRODUCTS"
ORDER_CREATED = "floor.order.created"
AVAILABILITY_CHANGED = "floor.product.availability_changed"
FRONT_CONSUMER = "floor-front"
UPSTREAM_CONSUMER = "floor-upstream"
FETCH_BATCH = 64
PRODUCT_KEY = "floor:product:"
JSON_TYPE = "application/json"

ApiKey = web.AppKey("floor", dict)


async def streams(js: JetStreamContext) -> None:
    for name, subjects in ((ORDERS_STREAM, ["floor.order.>"]), (PRODUCTS_STREAM, ["floor.product.>"])):
        with contextlib.suppress(nats.js.errors.BadRequestError):
            await js.add_stream(name=name, subjects=subjects)


async def consume(js: JetStreamContext, subject: str, durable: str, apply: Any) -> None:
    """Fetch what is there (up to FETCH_BATCH), apply it, ack each message; forever."""
    subscription = await js.pull_subscribe(subject, durable=durable)
    while True:
        try:
            messages = await subscription.fetch(FETCH_BATCH, timeout=1.0)
        except TimeoutError:  # nats-py raises its own and, when a pull expires empty, asyncio's
            continue
        except nats.errors.ConnectionClosedError:
            return
        try:
            await apply(messages)
        except Exception:  # left unacked: redelivered after the ack wait
            traceback.print_exc()
            continue
        for message in messages:
            await message.ack()


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _connections(redis_url: str, nats_url: str) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        nc: Nats = await nats.connect(nats_url, name="bench-floor")
        js = nc.jetstream()
        await streams(js)
        app[ApiKey].update(redis=aioredis.Redis.from_url(redis_url), nc=nc, js=js)
        yield
        await nc.close()
        await app[ApiKey]["redis"].aclose()

    return context


def upstream_app(redis_url: str, nats_url: str) -> web.Application:
    app = web.Application()
    app[ApiKey] = {}

    async def batch(request: web.Request) -> web.Response:
        ids = orjson.loads(await request.read())["ids"]
        found = [raw for raw in await app[ApiKey]["redis"].mget([PRODUCT_KEY + i for i in ids]) if raw]
        return web.Response(body=b"[" + b",".join(found) + b"]", content_type=JSON_TYPE)

    async def reserve(messages: list[Any]) -> None:
        pipe = app[ApiKey]["redis"].pipeline(transaction=False)
        orders = [orjson.loads(message.data) for message in messages]
        for order in orders:
            for item in order["items"]:
                pipe.decrby(f"floor:stock:{item['productId']}", item["quantity"])
        left = iter(await pipe.execute())
        js: JetStreamContext = app[ApiKey]["js"]
        await asyncio.gather(
            *(
                js.publish(
                    AVAILABILITY_CHANGED,
                    orjson.dumps({"productId": item["productId"], "quantityAvailable": next(left)}),
                )
                for order in orders
                for item in order["items"]
            )
        )

    async def consumer(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(consume(app[ApiKey]["js"], ORDER_CREATED, UPSTREAM_CONSUMER, reserve))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_post("/batch", batch)
    app.router.add_get("/ready", ready)
    app.cleanup_ctx.extend([_connections(redis_url, nats_url), consumer])
    return app


def front_app(upstream_url: str, redis_url: str, nats_url: str) -> web.Application:
    app = web.Application()
    app[ApiKey] = {}

    async def create_order(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        ids = sorted({item["productId"] for item in body["items"]})
        session: aiohttp.ClientSession = app[ApiKey]["session"]
        async with session.post(
            f"{upstream_url}/batch", data=orjson.dumps({"ids": ids}), headers={"Content-Type": JSON_TYPE}
        ) as response:
            prices = {p["id"]: p["currentPrice"] for p in orjson.loads(await response.read())}
        order_id = str(uuid.uuid4())
        order = orjson.dumps(
            {
                "id": order_id,
                "userId": body["userId"],
                "status": "CREATED",
                "items": [{**item, "unitPrice": prices[item["productId"]]} for item in body["items"]],
            }
        )
        await app[ApiKey]["redis"].set(f"floor:order:{order_id}", order)
        await app[ApiKey]["js"].publish(ORDER_CREATED, order)
        return web.Response(status=201, body=order, content_type=JSON_TYPE)

    async def apply(messages: list[Any]) -> None:
        pipe = app[ApiKey]["redis"].pipeline(transaction=False)
        for message in messages:
            change = orjson.loads(message.data)
            pipe.set(f"floor:stockview:{change['productId']}", message.data)
        await pipe.execute()

    async def session_and_consumer(app: web.Application) -> AsyncIterator[None]:
        app[ApiKey]["session"] = aiohttp.ClientSession()
        task = asyncio.create_task(consume(app[ApiKey]["js"], AVAILABILITY_CHANGED, FRONT_CONSUMER, apply))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await app[ApiKey]["session"].close()

    app.router.add_post("/api/v1/orders", create_order)
    app.router.add_get("/ready", ready)
    app.cleanup_ctx.extend([_connections(redis_url, nats_url), session_and_consumer])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("role", choices=["front", "upstream"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", help="the upstream's base URL (front only)")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    if args.role == "front":
        app = front_app(args.upstream, args.redis, args.nats)
    else:
        app = upstream_app(args.redis, args.nats)
    factory = event_loop.loop_factory()
    loop = factory() if factory is not None else None
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
