"""The hiredis packer writes the very bytes redis-py's own packer writes, and refuses alike."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from adapters.redis.client import RedisClient
from adapters.redis.packing import HiredisPacking, pack_with_hiredis

ARGUMENTS = st.one_of(
    st.text(),
    st.binary(),
    st.integers(),
    st.floats(allow_nan=False),
)
NAMES = st.sampled_from(["GET", "EVALSHA", "MGET", b"SET"])
COMMANDS = st.tuples(NAMES, st.lists(ARGUMENTS, max_size=12)).map(lambda named: (named[0], *named[1]))


def packed_class() -> type[Connection]:
    pool = BlockingConnectionPool.from_url("redis://127.0.0.1:1")
    pack_with_hiredis(pool)
    return pool.connection_class  # type: ignore[no-any-return]


@given(st.lists(COMMANDS, min_size=1, max_size=6))
def test_a_pipeline_is_packed_into_the_same_bytes(commands: list[tuple[Any, ...]]) -> None:
    plain, packed = Connection(), packed_class()()
    assert b"".join(packed.pack_commands(commands)) == b"".join(plain.pack_commands(commands))
    for command in commands:
        assert b"".join(packed.pack_command(*command)) == b"".join(plain.pack_command(*command))


def test_a_command_name_with_a_space_is_split_as_redis_py_splits_it() -> None:
    packed = packed_class()()
    assert b"".join(packed.pack_command("CLIENT TRACKING", "ON")) == b"".join(
        Connection().pack_command("CLIENT TRACKING", "ON")
    )
    assert b"".join(packed.pack_command("CLIENT TRACKING", "ON")).startswith(b"*3\r\n$6\r\nCLIENT\r\n")


@pytest.mark.parametrize("refused", [True, None, object()])
def test_what_redis_py_refuses_is_refused_with_its_error(refused: object) -> None:
    with pytest.raises(DataError):
        packed_class()().pack_command("SET", "k", refused)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6379/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_every_kind_of_connection_keeps_its_kind(url: str, kind: type[Connection]) -> None:
    pool = BlockingConnectionPool.from_url(url)
    pack_with_hiredis(pool)
    pack_with_hiredis(pool)  # twice changes nothing
    assert issubclass(pool.connection_class, kind)
    assert issubclass(pool.connection_class, HiredisPacking)
    assert pool.connection_class.__mro__.count(HiredisPacking) == 1


def test_the_services_redis_client_packs_with_hiredis() -> None:
    pool = RedisClient("redis://127.0.0.1:1").redis.connection_pool
    assert issubclass(pool.connection_class, HiredisPacking)
