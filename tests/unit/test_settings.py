"""Settings read from the environment: a bad value is refused with a message naming the variable."""

from __future__ import annotations

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
