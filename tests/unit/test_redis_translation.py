"""What leaves a Redis adapter: the port's own error for an outage, anything else untouched."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.redis.client import translated
from domain.errors import StoreUnavailable

UVLOOP_CLOSED = RuntimeError(
    "unable to perform operation on <TCPTransport closed=True reading=False 0x561c0329c960>; "
    "the handler is closed"
)


@pytest.mark.parametrize(
    "failure", [RedisConnectionError("gone"), ConnectionResetError(), UVLOOP_CLOSED], ids=repr
)
def test_an_outage_becomes_the_ports_error(failure: Exception) -> None:
    with pytest.raises(StoreUnavailable) as raised, translated(StoreUnavailable, "store down"):
        raise failure
    assert raised.value.message == "store down"
    assert raised.value.__cause__ is failure


def test_another_runtime_error_is_a_bug_and_leaves_as_it_is() -> None:
    with pytest.raises(RuntimeError, match="not an outage"), translated(StoreUnavailable, "store down"):
        raise RuntimeError("not an outage")
