"""The prompt lane: the Redis commands of an HTTP request do not queue behind background batches."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.redis.client import AutoPipeline, RedisClient, prompt_lane
from entrypoints.background import BackgroundTasks
from entrypoints.http.lanes import prompt_lane_middleware


def unconnected() -> RedisClient:
    return RedisClient("redis://127.0.0.1:1/0")  # nothing connects before a command is sent


async def test_inside_the_prompt_lane_commands_take_a_pipeline_of_their_own() -> None:
    client = unconnected()
    background = client.batched

    with prompt_lane():
        prompt = client.batched
        started_inside = await asyncio.create_task(_lane_of(client))

    assert prompt is not background
    assert started_inside is prompt, "a task started inside the lane stays in it"
    assert client.batched is background


async def test_work_a_request_leaves_running_goes_back_to_the_background_lane() -> None:
    client = unconnected()
    seen: list[AutoPipeline] = []

    async def work() -> None:
        seen.append(await _lane_of(client))

    tasks = BackgroundTasks()
    with prompt_lane():
        prompt = client.batched
        tasks.start(work())
    await asyncio.sleep(0.01)

    assert len(seen) == 1
    assert seen[0] is not prompt


async def test_an_http_request_runs_in_the_prompt_lane() -> None:
    client = unconnected()
    background = client.batched
    seen: list[AutoPipeline] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(client.batched)
        return web.Response(text="ok")

    app = web.Application(middlewares=[prompt_lane_middleware])
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as http:
        for _ in range(2):  # and again on the same keep-alive connection
            assert (await http.get("/")).status == 200

    assert len(seen) == 2
    assert all(lane is not background for lane in seen)
    assert client.batched is background, "the lane ends with the request"


async def _lane_of(client: RedisClient) -> AutoPipeline:
    await asyncio.sleep(0)
    return client.batched
