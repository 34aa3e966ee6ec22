"""The JetStream streams the services create when missing (adapters.broker.STREAMS)."""

from __future__ import annotations

import logging

import nats.js.errors
from nats.js import JetStreamManager
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from adapters.broker import STREAMS

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
"""A re-publish of one `Nats-Msg-Id` within this window is stored once."""
MAX_AGE_S = 7 * 24 * 3600.0

STREAM_NAME_IN_USE = 10058
"""JetStream's err_code for "stream name already in use with a different configuration"."""
SUBJECTS_OVERLAP = 10065


def stream_config(name: str, subjects: tuple[str, ...], replicas: int) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=list(subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
        max_age=MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


async def ensure_streams(jsm: JetStreamManager, replicas: int) -> None:
    """Create every stream that is missing; leave an existing one as its operator configured it.

    Creating a stream with the configuration it already has succeeds, so two services racing
    to create the same stream both succeed; nats errors other than the two below propagate.
    """
    for name, subjects in STREAMS.items():
        try:
            await jsm.add_stream(stream_config(name, subjects, replicas))
        except nats.js.errors.BadRequestError as error:
            if error.err_code == STREAM_NAME_IN_USE:
                await _tell_replicas_apart(jsm, name, replicas)
            elif error.err_code == SUBJECTS_OVERLAP:
                log.error("stream %s not created: another stream holds %s", name, ", ".join(subjects))
            else:
                raise


async def _tell_replicas_apart(jsm: JetStreamManager, name: str, replicas: int) -> None:
    """An existing stream is left as its operator configured it; a replica count other than
    NATS_STREAM_REPLICAS is worth a warning (losing a node may lose what it holds)."""
    info = await jsm.stream_info(name)
    held = info.config.num_replicas or 1
    if held != replicas:
        log.warning(
            "stream %s exists with %d replica(s), not the %d NATS_STREAM_REPLICAS asks for; left as it is"
            " (change it with `nats stream edit %s --replicas %d`)",
            name,
            held,
            replicas,
            name,
            replicas,
        )
    else:
        log.info("stream %s exists with another configuration; left as it is", name)
