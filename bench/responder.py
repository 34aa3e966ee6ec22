"""The request-reply baseline's other side: a trivial core-NATS responder in a process of its own.

`python -m bench.responder --url nats://... --subject S` answers every request on S at once
with a fixed product-sized JSON document, and prints `ready` once subscribed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import nats
from nats.aio.msg import Msg

REPLY = json.dumps(
    {
        "productId": "00000000-0000-4000-8000-000000000000",
        "product": {
            "id": "00000000-0000-4000-8000-000000000000",
            "name": "Bench product",
            "basePrice": 10.0,
            "currentPrice": 10.0,
            "currency": "USD",
            "status": "ACTIVE",
            "quantityAvailable": 1000,
            "version": 1,
            "updatedAt": "2026-01-01T00:00:00Z",
        },
    }
).encode()


async def serve(url: str, subject: str) -> None:
    nc = await nats.connect(url, name="bench-responder")

    async def answer(msg: Msg) -> None:
        await msg.respond(REPLY)

    await nc.subscribe(subject, cb=answer)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.responder")
    parser.add_argument("--url", required=True)
    parser.add_argument("--subject", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.url, args.subject))


if __name__ == "__main__":
    main()
