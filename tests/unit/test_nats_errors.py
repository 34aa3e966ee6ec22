"""What the logs say of a NATS error: a JetStream API error keeps the server's own description."""

from __future__ import annotations

import nats.errors
import nats.js.errors

from adapters.nats.connection import described


def test_a_jetstream_api_error_is_described_with_the_servers_reason_and_code() -> None:
    error = nats.js.errors.ServerError(
        code=500, err_code=10074, description="replicas > 1 not supported in non-clustered mode"
    )
    text = described(error)
    assert "ServerError" in text
    assert "replicas > 1 not supported in non-clustered mode" in text
    assert "err_code=10074" in text
    assert "code=500" in text


def test_other_errors_are_described_by_their_repr() -> None:
    assert described(nats.errors.NoServersError()) == repr(nats.errors.NoServersError())
