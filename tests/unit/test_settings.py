"""Settings read from the environment: a bad value is refused with a message naming the variable."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from entrypoints import Settings, SettingsError


@pytest.mark.parametrize("value", ["a b.c", "a.b", "a*", "a>", "x" * 65, "ü", "a\tb", "a/b"])
def test_an_instance_id_unsafe_in_a_subject_or_consumer_name_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"INSTANCE_ID": value})
    assert caught.value.name == "INSTANCE_ID"
    assert "INSTANCE_ID" in str(caught.value)


@pytest.mark.parametrize("value", ["order-1", "A_b-9", "x" * 64, "7"])
def test_an_instance_id_of_letters_digits_dashes_and_underscores_is_kept(value: str) -> None:
    assert Settings.from_env({"INSTANCE_ID": value}).instance_id == value


def test_the_random_default_instance_id_is_a_valid_one() -> None:
    first, second = Settings(), Settings()
    assert first.instance_id != second.instance_id
    Settings(instance_id=first.instance_id)  # passes its own validation


@pytest.mark.parametrize("value", ["0", "6", "-1"])
def test_stream_replicas_outside_what_nats_allows_are_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"NATS_STREAM_REPLICAS": value})
    assert caught.value.name == "NATS_STREAM_REPLICAS"
    assert "1..5" in str(caught.value)


@pytest.mark.parametrize("value", ["1", "3", "5"])
def test_stream_replicas_of_one_to_five_are_kept(value: str) -> None:
    assert Settings.from_env({"NATS_STREAM_REPLICAS": value}).nats_stream_replicas == int(value)


def test_log_level_and_format_are_read_in_any_case() -> None:
    settings = Settings.from_env({"LOG_LEVEL": "debug", "LOG_FORMAT": "Console"})
    assert (settings.log_level, settings.log_format) == ("DEBUG", "console")
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        Settings.from_env({"LOG_LEVEL": "trace"})


NUMERIC_RANGES = {
    "ORDER_SERVICE_PORT": ("0", "65535"),
    "PRODUCT_SERVICE_PORT": ("0", "65535"),
    "NATS_STREAM_REPLICAS": ("1", "5"),
    "PRODUCT_REQUEST_TIMEOUT_MS": ("1", "600000"),
    "RETRY_MAX_ATTEMPTS": ("1", "100"),
    "RETRY_INITIAL_INTERVAL_MS": ("1", "600000"),
    "BREAKER_FAILURE_THRESHOLD": ("1", "10000"),
    "BREAKER_RESET_TIMEOUT_S": ("0.001", "86400"),
    "CACHE_TTL_S": ("1", "31536000"),
    "ASYNC_REQUEST_TIMEOUT_MS": ("1", "600000"),
    "REFRESH_BATCH_SIZE": ("1", "1000"),
    "REFRESH_BATCH_DELAY_MS": ("0", "600000"),
}
"""Every numeric setting of INTERFACE §2 with the lowest and highest value it takes (README, Settings)."""

THRESHOLDS = ("PRICE_DISCREPANCY_PCT", "REVIEW_ITEM_PCT", "REVIEW_TOTAL_AMOUNT")
"""Decimal settings: any finite number of 0 or more."""


def _refused(name: str, environ: dict[str, str] | None = None, **keywords: Any) -> str:
    """The message of the SettingsError naming `name` that `environ`, else `keywords`, raises."""
    build = (lambda: Settings(**keywords)) if environ is None else (lambda: Settings.from_env(environ))
    with pytest.raises(SettingsError) as caught:
        build()
    assert caught.value.name == name
    assert str(caught.value).startswith(f"invalid setting {name}: ")
    return str(caught.value)


NOT_FINITE = ["nan", "NaN", "sNaN", "inf", "-inf", "Infinity"]
"""1e999 too, as a float (it is inf); a Decimal threshold of 1e999 is finite, and merely never reached."""


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name in NUMERIC_RANGES for value in [*NOT_FINITE, "1e999", "-1e999"]]
    + [(name, value) for name in THRESHOLDS for value in NOT_FINITE],
)
def test_nan_and_infinity_are_refused_from_the_environment_naming_the_setting(name: str, value: str) -> None:
    _refused(name, {name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORDER_SERVICE_PORT", "8_080"),
        ("ORDER_SERVICE_PORT", "\u0668\u0660\u0668\u0660"),  # Arabic-Indic 8080, which int() reads
        ("BREAKER_RESET_TIMEOUT_S", "3_0"),
        ("BREAKER_RESET_TIMEOUT_S", "\uff13\uff10"),  # fullwidth 30
        ("PRICE_DISCREPANCY_PCT", "1_0"),
    ],
)
def test_a_number_in_python_only_spelling_is_refused_from_the_environment(name: str, value: str) -> None:
    _refused(name, {name: value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_by_keyword_naming_the_setting(value: float) -> None:
    _refused("BREAKER_RESET_TIMEOUT_S", breaker_reset_timeout_s=value)


def _below_and_above(name: str) -> list[str]:
    low, high = NUMERIC_RANGES[name]
    step = "0.001" if "." in low else "1"
    return [str(Decimal(low) - Decimal(step)), str(Decimal(high) + Decimal(step))]


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name in NUMERIC_RANGES for value in _below_and_above(name)]
)
def test_a_numeric_setting_out_of_its_range_is_refused_from_the_environment_and_by_keyword(
    name: str, value: str
) -> None:
    low, high = NUMERIC_RANGES[name]
    message = _refused(name, {name: value})
    assert high in message, message
    number = float(value) if "." in low else int(value)
    _refused(name, **{name.lower(): number})


@pytest.mark.parametrize("name", list(NUMERIC_RANGES))
def test_a_numeric_setting_takes_both_ends_of_its_range(name: str) -> None:
    for value in NUMERIC_RANGES[name]:
        settings = Settings.from_env({name: value})
        assert getattr(settings, name.lower()) == (float(value) if "." in value else int(value))


def test_an_integer_too_large_for_a_float_is_refused_not_a_crash_later() -> None:
    """It used to pass, and `order-service serve` died in a traceback dividing it by 1000."""
    _refused("PRODUCT_REQUEST_TIMEOUT_MS", {"PRODUCT_REQUEST_TIMEOUT_MS": "1" + "0" * 400})


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("retry_max_attempts", "x", "must be an integer, got str 'x'"),
        ("retry_max_attempts", "4", "must be an integer, got str '4'"),
        ("retry_max_attempts", True, "must be an integer, got bool True"),
        ("cache_ttl_s", 2.5, "must be an integer, got float 2.5"),
        ("order_service_port", 8080.0, "must be an integer, got float 8080.0"),
        ("nats_stream_replicas", None, "must be an integer, got NoneType None"),
        ("breaker_reset_timeout_s", "30", "must be a number (an int or a float), got str '30'"),
        ("breaker_reset_timeout_s", False, "must be a number (an int or a float), got bool False"),
        ("price_discrepancy_pct", "1.5", "must be a Decimal or an int (a float is not exact), got str '1.5'"),
        ("review_total_amount", 10.5, "must be a Decimal or an int (a float is not exact), got float 10.5"),
        ("order_service_host", 5, "must be a string, got int 5"),
        ("instance_id", 7, "must be a string, got int 7"),
        ("log_level", 10, "must be a string, got int 10"),
        ("refresh_cron", None, "must be a string, got NoneType None"),
        ("redis_url", b"redis://:secret@h", "must be a string or None, got bytes"),
        ("admin_token", b"secret", "must be a string or None, got bytes"),
    ],
)
def test_a_keyword_of_the_wrong_type_is_refused_naming_the_setting_and_the_type_expected(
    keyword: str, value: Any, message: str
) -> None:
    """Keywords are typed: a numeric string is refused (the environment's strings go through from_env)."""
    assert _refused(keyword.upper(), **{keyword: value}) == f"invalid setting {keyword.upper()}: {message}"


def test_a_credential_of_the_wrong_type_is_not_shown() -> None:
    text = _refused("ADMIN_TOKEN", admin_token=b"hunter2")
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("keyword", "value", "kept"),
    [
        ("breaker_reset_timeout_s", 30, 30),
        ("breaker_reset_timeout_s", 0.5, 0.5),
        ("price_discrepancy_pct", 2, Decimal(2)),
        ("review_total_amount", Decimal("10.50"), Decimal("10.50")),
        ("log_level", "debug", "DEBUG"),
        ("redis_url", None, None),
    ],
)
def test_a_keyword_of_its_type_is_kept(keyword: str, value: Any, kept: Any) -> None:
    got = getattr(Settings(**{keyword: value}), keyword)
    assert got == kept
    assert type(got) is type(kept)


def test_a_wrong_value_too_long_to_show_is_refused_in_one_short_line() -> None:
    text = _refused("CACHE_TTL_S", cache_ttl_s=10**5000)  # str() of it raises ValueError
    assert len(text) < 200
    text = _refused("REFRESH_CRON", refresh_cron="x" * 5000)
    assert len(text) < 200
