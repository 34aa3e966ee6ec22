"""The one rule for an id (a product, order, user, variant, event or request id): a non-empty
string of at most MAX_ID_LENGTH characters (INTERFACE §4). Every id becomes part of a Redis key,
a log line or a reply somewhere, so none is unbounded."""

from __future__ import annotations

import attrs

MAX_ID_LENGTH = 128
AN_ID = f"a non-empty string of at most {MAX_ID_LENGTH} characters"


def is_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH


def check_id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    """An attrs validator of an id, or (in `deep_iterable`) of each of several."""
    if not is_id(value):
        raise ValueError(f"{attribute.name} must be {AN_ID}, got {len(value)} characters")
