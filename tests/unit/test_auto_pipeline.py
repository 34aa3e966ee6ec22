"""AutoPipeline's trigger: an idle client sends at once; what comes while a send is out waits for it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis.asyncio import Redis

from adapters.redis.client import AutoPipeline


class ScriptedRedis:
    """A stand-in for redis-py's client: records each send, answers after `turns` loop turns."""

    def __init__(self, turns: int = 3) -> None:
        self.turns = turns
        self.sends: list[list[tuple[Any, ...]]] = []
        self.out = 0
        self.most_out = 0

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.sends.append(commands)
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            for _ in range(self.turns):
                await asyncio.sleep(0)
        finally:
            self.out -= 1
        return [f"{command[0]} {command[1]}" for command in commands]

    async def execute_command(self, *command: Any) -> Any:
        [answer] = await self._round_trip([command])
        return answer

    def pipeline(self, transaction: bool = True) -> ScriptedPipeline:
        return ScriptedPipeline(self)


class ScriptedPipeline:
    def __init__(self, redis: ScriptedRedis) -> None:
        self.redis = redis
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *command: Any) -> None:
        self.commands.append(command)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await self.redis._round_trip(self.commands)


def pipeline_over(redis: ScriptedRedis) -> AutoPipeline:
    return AutoPipeline(lambda: cast(Redis, redis))


async def test_a_lone_command_is_sent_before_the_loop_turns() -> None:
    redis = ScriptedRedis()
    sent = asyncio.create_task(pipeline_over(redis).execute("GET", "a"))
    await asyncio.sleep(0)  # the task's first step, and nothing more

    assert redis.sends == [[("GET", "a")]]
    assert await sent == "GET a"


async def test_commands_issued_while_a_send_is_out_leave_together_after_it() -> None:
    redis = ScriptedRedis()
    auto = pipeline_over(redis)

    answers = await asyncio.gather(*(auto.execute("GET", f"k{n}") for n in range(20)))

    assert answers == [f"GET k{n}" for n in range(20)]
    assert redis.sends == [[("GET", "k0")], [("GET", f"k{n}") for n in range(1, 20)]]
    assert redis.most_out == 1, "one send in flight at a time"


async def test_commands_keep_batching_while_the_previous_batch_is_out() -> None:
    redis = ScriptedRedis(turns=2)
    auto = pipeline_over(redis)

    async def caller(n: int) -> list[str]:
        return [await auto.execute("GET", f"c{n}-{step}") for step in range(3)]

    answers = await asyncio.gather(*(caller(n) for n in range(10)))

    assert answers == [[f"GET c{n}-{step}" for step in range(3)] for n in range(10)]
    assert len(redis.sends) < 10, f"30 commands from 10 callers took {len(redis.sends)} round trips"
    assert redis.most_out == 1
    assert sum(len(send) for send in redis.sends) == 30


async def test_after_a_burst_the_client_is_idle_again_and_sends_at_once() -> None:
    redis = ScriptedRedis()
    auto = pipeline_over(redis)
    await asyncio.gather(*(auto.execute("GET", f"k{n}") for n in range(5)))
    before = len(redis.sends)

    sent = asyncio.create_task(auto.execute("GET", "later"))
    await asyncio.sleep(0)

    assert redis.sends[before:] == [[("GET", "later")]]
    await sent


async def test_with_two_sends_allowed_a_second_command_does_not_wait_for_the_first() -> None:
    redis = ScriptedRedis()
    auto = AutoPipeline(lambda: cast(Redis, redis), max_in_flight=2)

    answers = await asyncio.gather(*(auto.execute("GET", f"k{n}") for n in range(5)))

    assert answers == [f"GET k{n}" for n in range(5)]
    assert redis.sends[:2] == [[("GET", "k0")], [("GET", "k1")]], "both out before either returned"
    assert redis.sends[2:] == [[("GET", "k2"), ("GET", "k3"), ("GET", "k4")]]
    assert redis.most_out == 2
