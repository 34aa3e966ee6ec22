"""Streams the services find already there: left as the operator made them, a replica mismatch told."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from adapters.broker import STREAMS
from adapters.nats.streams import STREAM_NAME_IN_USE, ensure_streams


class ClusterWithStreams:
    """What a JetStream cluster answers for streams that exist with `replicas` replicas (a
    single server refuses any replicas > 1 outright, so a cluster is what this needs)."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.added: list[StreamConfig] = []

    async def add_stream(self, config: StreamConfig) -> None:
        self.added.append(config)
        if config.num_replicas != self.replicas:
            raise nats.js.errors.BadRequestError(
                code=400, err_code=STREAM_NAME_IN_USE, description="stream name already in use"
            )

    async def stream_info(self, name: str) -> Any:
        return SimpleNamespace(config=SimpleNamespace(name=name, num_replicas=self.replicas))


@pytest.mark.parametrize(("existing", "wanted", "warned"), [(1, 3, True), (3, 3, False)])
async def test_an_existing_streams_replica_count_other_than_the_setting_is_warned_about(
    caplog: pytest.LogCaptureFixture, existing: int, wanted: int, warned: bool
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.nats")
    cluster = ClusterWithStreams(existing)

    await ensure_streams(cluster, wanted)  # type: ignore[arg-type]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert len(warnings) == len(STREAMS)
        assert all(
            f"{existing} replica(s), not the {wanted} NATS_STREAM_REPLICAS asks for" in w for w in warnings
        )
    else:
        assert warnings == []
    assert len(cluster.added) == len(STREAMS), "nothing changed or deleted: each stream only asked for"
