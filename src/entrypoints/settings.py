"""Settings (INTERFACE §2): read from the environment, validated once, one clear line per mistake."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
from croniter import croniter

from domain.events import MAX_BATCH_IDS


class SettingsError(ValueError):
    """A bad setting; the message names it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"invalid setting {name}: {problem}")
        self.name = name


def _brief(text: str, most: int = 80) -> str:
    """`text`, cut to `most` characters: a refused value shows in one short line."""
    return text if len(text) <= most else f"{text[:most]}..."


def _shown(value: object) -> str:
    """A refused number as the message shows it (str() of an int of 4301+ digits raises)."""
    try:
        return _brief(str(value))
    except ValueError:
        return "a number too long to show"


def _quoted(value: object) -> str:
    try:
        return _brief(repr(value))
    except ValueError:
        return "a number too long to show"


_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number (an int or a float)"),
    "Decimal": ((Decimal, int), "a Decimal or an int (a float is not exact)"),
    "str": ((str,), "a string"),
    "str | None": ((str, type(None)), "a string or None"),
}
"""What each setting's keyword takes, by its annotation. A string is never a number here: keywords
are typed, and the environment's strings are parsed by `Settings.from_env`. A bool is no int."""

_NOT_SHOWN = frozenset({"admin_token", "redis_url", "nats_url", "product_service_url"})
"""May hold a credential: a value of the wrong type is named by its type alone."""


def _of_kind(accepted: tuple[type, ...], words: str, *, show: bool) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, accepted):
            got = f"{type(value).__name__} {_quoted(value)}" if show else type(value).__name__
            raise SettingsError(attribute.name.upper(), f"must be {words}, got {got}")

    return check


def _typed(_: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    """Every field's type is checked before its own validator (one place, so no field is missed)."""
    typed = []
    for field in fields:
        accepted, words = _KINDS[str(field.type)]
        of_kind = _of_kind(accepted, words, show=field.name not in _NOT_SHOWN)
        checks = of_kind if field.validator is None else attrs.validators.and_(of_kind, field.validator)
        typed.append(field.evolve(validator=checks))
    return typed


def _port(name: str) -> Callable[[Any, Any, int], None]:
    def check(_: Any, __: Any, value: int) -> None:
        if not 0 <= value <= 65535:
            raise SettingsError(name, f"must be a port number 0..65535, got {_shown(value)}")

    return check


def _urls(name: str, schemes: tuple[str, ...]) -> Callable[[Any, Any, str | None], None]:
    def check(_: Any, __: Any, value: str | None) -> None:
        if value is None:
            return
        for url in value.split(","):
            parts = urlsplit(url.strip())
            if parts.scheme not in schemes or not parts.hostname:
                raise SettingsError(name, f"expected {' or '.join(schemes)}:// URL(s)")
            try:
                parts.port  # noqa: B018 - urlsplit checks the port only when it is read
            except ValueError:
                raise SettingsError(name, "the port must be a number 0..65535") from None

    return check


def _between(name: str, low: int, high: int) -> Callable[[Any, Any, int], None]:
    """An integer from `low` to `high`: a bound on each, so that no value fails later, in use
    (10**400 ms overflowed a float; a TTL past Redis's limit fails every write)."""

    def check(_: Any, __: Any, value: int) -> None:
        if not low <= value <= high:
            raise SettingsError(name, f"must be {low}..{high}, got {_shown(value)}")

    return check


def _seconds(name: str, high: int) -> Callable[[Any, Any, float], None]:
    """A number of seconds above 0 and at most `high`: nan and inf fail both comparisons
    (a nan reset timeout kept the breaker open for good)."""

    def check(_: Any, __: Any, value: float) -> None:
        if not 0 < value <= high:
            raise SettingsError(name, f"must be a number above 0 and at most {high}, got {_shown(value)}")

    return check


def _threshold(name: str) -> Callable[[Any, Any, Decimal], None]:
    def check(_: Any, __: Any, value: Decimal) -> None:
        if not value.is_finite() or value < 0:
            raise SettingsError(name, f"must be a number of 0 or more, got {_shown(value)}")

    return check


MINUTES_10_MS = 600_000
"""The longest timeout, interval or delay in milliseconds."""


_INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Safe as a NATS subject token and in a JetStream consumer name (reply routing uses both)."""


def _instance_id(_: Any, __: Any, value: str) -> None:
    if not _INSTANCE_ID.fullmatch(value):
        raise SettingsError(
            "INSTANCE_ID", f"must be 1..64 of letters, digits, '-' and '_', got {_quoted(value)}"
        )


def _cron(_: Any, __: Any, value: str) -> None:
    if not croniter.is_valid(value):
        raise SettingsError("REFRESH_CRON", f"not a cron expression: {_quoted(value)}")


def _upper(value: str) -> str:
    return value.upper() if isinstance(value, str) else value  # any other type: refused by _typed


def _lower(value: str) -> str:
    return value.lower() if isinstance(value, str) else value


def _exact(value: object) -> Any:
    """An int by keyword is the Decimal of it; anything else is left for _typed to judge."""
    return Decimal(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[Any, Any, str], None]:
    def check(_: Any, __: Any, value: str) -> None:
        if value not in choices:
            raise SettingsError(name, f"must be one of {', '.join(choices)}, got {_quoted(value)}")

    return check


def _shown_url(value: str | None) -> str:
    """How a URL setting shows in repr(settings): credentials masked."""
    return repr(mask_url(value))


def _shown_secret(value: str | None) -> str:
    return "'***'" if value else repr(value)


def _new_instance_id() -> str:
    return uuid.uuid4().hex[:12]


@attrs.frozen(kw_only=True, field_transformer=_typed)
class Settings:
    """Every setting of both services; unset means INTERFACE §2's default."""

    order_service_host: str = "127.0.0.1"
    order_service_port: int = attrs.field(default=8080, validator=_port("ORDER_SERVICE_PORT"))
    product_service_host: str = "127.0.0.1"
    product_service_port: int = attrs.field(default=8081, validator=_port("PRODUCT_SERVICE_PORT"))
    product_service_url: str | None = attrs.field(
        default=None, validator=_urls("PRODUCT_SERVICE_URL", ("http", "https")), repr=_shown_url
    )
    redis_url: str | None = attrs.field(
        default=None, validator=_urls("REDIS_URL", ("redis", "rediss")), repr=_shown_url
    )
    nats_url: str | None = attrs.field(
        default=None, validator=_urls("NATS_URL", ("nats", "tls")), repr=_shown_url
    )
    nats_stream_replicas: int = attrs.field(default=1, validator=_between("NATS_STREAM_REPLICAS", 1, 5))
    instance_id: str = attrs.field(factory=_new_instance_id, validator=_instance_id)
    product_request_timeout_ms: int = attrs.field(
        default=500, validator=_between("PRODUCT_REQUEST_TIMEOUT_MS", 1, MINUTES_10_MS)
    )
    retry_max_attempts: int = attrs.field(default=4, validator=_between("RETRY_MAX_ATTEMPTS", 1, 100))
    retry_initial_interval_ms: int = attrs.field(
        default=1000, validator=_between("RETRY_INITIAL_INTERVAL_MS", 1, MINUTES_10_MS)
    )
    breaker_failure_threshold: int = attrs.field(
        default=3, validator=_between("BREAKER_FAILURE_THRESHOLD", 1, 10_000)
    )
    breaker_reset_timeout_s: float = attrs.field(
        default=30.0, validator=_seconds("BREAKER_RESET_TIMEOUT_S", 86_400)
    )
    cache_ttl_s: int = attrs.field(default=3600, validator=_between("CACHE_TTL_S", 1, 365 * 86_400))
    async_request_timeout_ms: int = attrs.field(
        default=5000, validator=_between("ASYNC_REQUEST_TIMEOUT_MS", 1, MINUTES_10_MS)
    )
    refresh_cron: str = attrs.field(default="0 */2 * * *", validator=_cron)
    # a batch's reply of 1000 products stays well within NATS's default max_payload (1 MiB)
    refresh_batch_size: int = attrs.field(
        default=50, validator=_between("REFRESH_BATCH_SIZE", 1, MAX_BATCH_IDS)
    )
    refresh_batch_delay_ms: int = attrs.field(
        default=1000, validator=_between("REFRESH_BATCH_DELAY_MS", 0, MINUTES_10_MS)
    )
    price_discrepancy_pct: Decimal = attrs.field(
        default=Decimal("1.0"), converter=_exact, validator=_threshold("PRICE_DISCREPANCY_PCT")
    )
    review_item_pct: Decimal = attrs.field(
        default=Decimal("10"), converter=_exact, validator=_threshold("REVIEW_ITEM_PCT")
    )
    review_total_amount: Decimal = attrs.field(
        default=Decimal("10"), converter=_exact, validator=_threshold("REVIEW_TOTAL_AMOUNT")
    )
    admin_token: str | None = attrs.field(default=None, repr=_shown_secret)
    log_level: str = attrs.field(
        default="INFO",
        converter=_upper,  # `debug` means DEBUG
        validator=_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    log_format: str = attrs.field(
        default="json", converter=_lower, validator=_choice("LOG_FORMAT", ("json", "console"))
    )

    def __attrs_post_init__(self) -> None:
        if self.admin_token is not None and not self.admin_token.strip():
            raise SettingsError("ADMIN_TOKEN", "must not be blank when set")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every variable of INTERFACE §2; `overrides` (CLI flags) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            name = field.name.upper()
            raw = env.get(name)
            if raw is None or raw == "" or overrides.get(field.name) is not None:
                continue  # unset, or a flag of the same meaning wins (its value is checked instead)
            values[field.name] = _parse(name, raw, field.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def masked(self) -> dict[str, Any]:
        """The settings as an operator may see them: no credentials, no token."""
        shown = attrs.asdict(self)
        for name in ("redis_url", "nats_url", "product_service_url"):
            shown[name] = mask_url(shown[name])
        shown["admin_token"] = "set" if self.admin_token else None
        return shown


def plain_number(text: str) -> str:
    """`text` when it spells a number as a setting does: ASCII, without Python's `_` separators
    (`int()`, `float()` and `Decimal()` also read `8_080` and non-ASCII digits); else ValueError."""
    if "_" in text or not text.isascii():
        raise ValueError(f"not a plain number: {text!r}")
    return text


def _parse(name: str, raw: str, kind: Any) -> Any:
    text = raw.strip()
    try:
        if kind in ("int", int):
            return int(plain_number(text))
        if kind in ("float", float):
            return float(plain_number(text))
        if kind in ("Decimal", Decimal):
            return Decimal(plain_number(text))
    except (ValueError, InvalidOperation):
        expected = {"int": "an integer", "float": "a number", "Decimal": "a number"}
        raise SettingsError(name, f"expected {expected.get(str(kind), 'a number')}, got {raw!r}") from None
    return text


SECRET_QUERY_WORDS = ("pass", "token", "secret")
"""A query parameter whose name holds one of these carries a credential (redis-py reads `?password=`)."""


def mask_url(value: str | None) -> str | None:
    """`redis://user:secret@host` -> `redis://user:***@host`, for each URL of a list; `?password=` too."""
    if value is None:
        return None
    return ",".join(_mask_one(url.strip()) for url in value.split(","))


def _mask_one(url: str) -> str:
    # Only the userinfo is rewritten, so the host and port show as given ([::1], a bad port).
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        parts = parts._replace(netloc=f"{user}:***@{hostport}" if colon else f"***@{hostport}")
    if parts.query:
        query = [
            (key, "***" if any(word in key.lower() for word in SECRET_QUERY_WORDS) else item)
            for key, item in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return parts.geturl()
