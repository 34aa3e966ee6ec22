"""The console scripts as an operator runs them: an address they cannot listen on, start and stop logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import LOOPBACK, free_port

SCRIPTS = Path(sys.executable).parent
"""The venv's bin directory: the console scripts `pip install -e .` put there."""


def environment(**settings: str) -> dict[str, str]:
    """This environment without any setting of ours (in-memory mode), plus `settings`."""
    ours = ("ORDER_SERVICE_", "PRODUCT_SERVICE_", "REDIS_URL", "NATS_", "INSTANCE_ID", "ADMIN_TOKEN", "LOG_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    return {**env, "LOG_FORMAT": "json", **settings}


def run(command: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own console script
        [str(SCRIPTS / command[0]), *command[1:]],
        env=environment(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "port_setting", "other_port_setting"),
    [
        (["order-service", "serve"], "ORDER_SERVICE_PORT", None),
        (["product-service", "serve"], "PRODUCT_SERVICE_PORT", None),
        (["order-service", "serve", "--embedded"], "ORDER_SERVICE_PORT", "PRODUCT_SERVICE_PORT"),
        (["order-service", "serve", "--embedded"], "PRODUCT_SERVICE_PORT", "ORDER_SERVICE_PORT"),
    ],
)
def test_a_port_in_use_exits_2_with_one_line_naming_the_setting(
    taken_port: int, command: list[str], port_setting: str, other_port_setting: str | None
) -> None:
    settings = {port_setting: str(taken_port)}
    if other_port_setting:
        settings[other_port_setting] = str(free_port())
    done = run(command, **settings)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"{command[0]}: cannot listen on {LOOPBACK}:{taken_port} ({port_setting}): address already in use"
    ]


@pytest.mark.parametrize("host", ["256.1.1.1", "bad..host"])
def test_a_host_that_does_not_resolve_exits_2_naming_the_host_setting(host: str) -> None:
    done = run(["order-service", "serve"], ORDER_SERVICE_HOST=host)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"order-service: cannot listen on {host}:8080 (ORDER_SERVICE_HOST): ")


def test_the_embedded_mode_with_a_bad_host_says_one_line_too() -> None:
    """Its warnings (here: the dev token beyond loopback) come once both services listen."""
    port = free_port()
    done = run(
        ["order-service", "serve", "--embedded"],
        ORDER_SERVICE_HOST="bad..host",
        ORDER_SERVICE_PORT=str(port),
        PRODUCT_SERVICE_PORT=str(free_port()),
        REDIS_URL=f"redis://{LOOPBACK}:1/0",
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"order-service: cannot listen on bad..host:{port} (ORDER_SERVICE_HOST): ")


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        (["order-service", "serve", "--port", "{port}"], {"ORDER_SERVICE_PORT": "abc"}),
        (["order-service", "serve", "--port", "{port}", "--log-level", "INFO"], {"LOG_LEVEL": "LOUD"}),
        (["product-service", "serve", "--port", "{port}"], {"PRODUCT_SERVICE_PORT": "abc"}),
        # the Order Service's settings in a shared environment are not the Product Service's
        (
            ["product-service", "serve"],
            {
                "PRODUCT_SERVICE_PORT": "{port}",
                "RETRY_MAX_ATTEMPTS": "0",
                "REFRESH_CRON": "bad",
                "ADMIN_TOKEN": " ",
            },
        ),
    ],
)
def test_a_flag_wins_over_a_bad_variable_and_a_service_reads_only_its_own(
    command: list[str], settings: dict[str, str]
) -> None:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    settings = {name: value.replace("{port}", str(port)) for name, value in settings.items()}
    returncode, _ = served_until_ready(command, port, **settings)
    assert returncode == 0


def test_the_embedded_mode_says_which_product_service_it_calls_when_told_another() -> None:
    order_port, product_port = free_port(), free_port()
    elsewhere = f"http://{LOOPBACK}:{free_port()}"

    _, lines = served_until_ready(
        ["order-service", "serve", "--embedded"],
        order_port,
        ORDER_SERVICE_PORT=str(order_port),
        PRODUCT_SERVICE_PORT=str(product_port),
        PRODUCT_SERVICE_URL=elsewhere,
    )

    assert (
        f"embedded mode: the Order Service calls PRODUCT_SERVICE_URL={elsewhere}, not the embedded"
        " Product Service (unset it to use the demo catalog)"
    ) in [line["event"] for line in lines]


@pytest.mark.parametrize(
    ("command", "settings", "line"),
    [
        (
            ["order-service", "serve"],
            {"BREAKER_RESET_TIMEOUT_S": "nan"},
            "invalid setting BREAKER_RESET_TIMEOUT_S: must be a number above 0 and at most 86400, got nan",
        ),
        (
            ["order-service", "serve", "--embedded"],
            {"BREAKER_RESET_TIMEOUT_S": "inf"},
            "invalid setting BREAKER_RESET_TIMEOUT_S: must be a number above 0 and at most 86400, got inf",
        ),
        (
            ["order-service", "serve"],
            {"CACHE_TTL_S": "31536001"},
            "invalid setting CACHE_TTL_S: must be 1..31536000, got 31536001",
        ),
        (
            ["order-service", "serve", "--port", "65536"],
            {},
            "invalid setting ORDER_SERVICE_PORT: must be a port number 0..65535, got 65536",
        ),
        (
            ["order-service", "serve"],
            {"ORDER_SERVICE_PORT": "8_080"},
            "invalid setting ORDER_SERVICE_PORT: expected an integer, got '8_080'",
        ),
        (
            ["product-service", "serve"],
            {"NATS_STREAM_REPLICAS": "inf"},
            "invalid setting NATS_STREAM_REPLICAS: expected an integer, got 'inf'",
        ),
    ],
)
def test_a_setting_that_is_not_finite_or_out_of_range_exits_2_with_one_line_naming_it(
    command: list[str], settings: dict[str, str], line: str
) -> None:
    done = run(command, **settings)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"{command[0]}: {line}"]


def test_a_port_flag_in_python_only_spelling_exits_2_with_one_line() -> None:
    done = run(["product-service", "serve", "--port", "8_081"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "product-service serve: error: argument --port: expected an integer, got '8_081' (see --help)"
    ]


def served_until_ready(
    command: list[str], port: int, while_up: Callable[[], None] = lambda: None, **settings: str
) -> tuple[int, list[dict[str, Any]]]:
    """Start `command`, wait for 200 from /ready on `port`, run `while_up`, SIGTERM it: its exit
    code and JSON lines."""
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [str(SCRIPTS / command[0]), *command[1:]],
        env=environment(**settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/ready", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert process.poll() is None, "the service exited"
                assert time.monotonic() < deadline, "not ready within 30 s"
                time.sleep(0.1)
        while_up()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    return process.returncode, [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("service", ["order-service", "product-service"])
def test_a_service_logs_where_it_listens_and_that_it_stopped(service: str) -> None:
    port = free_port()
    setting = "ORDER_SERVICE_PORT" if service == "order-service" else "PRODUCT_SERVICE_PORT"

    _, lines = served_until_ready([service, "serve"], port, **{setting: str(port)})

    events = [line["event"] for line in lines]
    assert f"{service} listening on http://{LOOPBACK}:{port}" in events
    assert events[-1] == f"{service} stopped"


def test_the_embedded_mode_runs_in_memory_whatever_redis_url_and_nats_url_say() -> None:
    """Its demo catalog must not land in a real store (the second audit: it used REDIS_URL)."""
    order_port, product_port = free_port(), free_port()

    _, lines = served_until_ready(
        ["order-service", "serve", "--embedded"],
        order_port,
        ORDER_SERVICE_PORT=str(order_port),
        PRODUCT_SERVICE_PORT=str(product_port),
        REDIS_URL=f"redis://{LOOPBACK}:1/0",  # nothing listens: ready only if unused
        NATS_URL=f"nats://{LOOPBACK}:1",
    )

    assert "embedded mode runs in memory: REDIS_URL and NATS_URL not used" in [
        line["event"] for line in lines
    ]


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), (LOOPBACK, False)])
def test_the_embedded_mode_warns_when_it_listens_beyond_loopback_with_the_dev_token(
    host: str, warned: bool
) -> None:
    order_port, product_port = free_port(), free_port()

    _, lines = served_until_ready(
        ["order-service", "serve", "--embedded"],
        order_port,
        ORDER_SERVICE_HOST=host,
        ORDER_SERVICE_PORT=str(order_port),
        PRODUCT_SERVICE_PORT=str(product_port),
        ADMIN_TOKEN="dev-admin-token",  # what make run sets
    )

    warnings = [line["event"] for line in lines if "dev ADMIN_TOKEN" in line["event"]]
    assert warnings == (
        [
            f"embedded mode listens on {host} with the documented dev ADMIN_TOKEN: whoever"
            " reaches it may use /admin; set ADMIN_TOKEN to a secret of your own"
        ]
        if warned
        else []
    )


def test_the_embedded_mode_wants_two_ports() -> None:
    port = str(free_port())
    done = run(["order-service", "serve", "--embedded"], ORDER_SERVICE_PORT=port, PRODUCT_SERVICE_PORT=port)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"order-service: ORDER_SERVICE_PORT and PRODUCT_SERVICE_PORT are both {port}:"
        " embedded mode serves each service on its own port"
    ]


@pytest.mark.parametrize(
    ("command", "listed", "not_listed"),
    [
        (
            ["order-service", "serve", "--help"],
            ["ADMIN_TOKEN", "REFRESH_CRON", "PRODUCT_SERVICE_URL", "--admin-token", "--embedded"],
            [],
        ),
        (
            ["product-service", "serve", "--help"],
            ["PRODUCT_SERVICE_PORT", "NATS_STREAM_REPLICAS", "INSTANCE_ID"],
            ["ADMIN_TOKEN", "--admin-token", "--product-service-url", "REFRESH_CRON", "--embedded"],
        ),
    ],
)
def test_help_lists_the_settings_the_command_reads(
    command: list[str], listed: list[str], not_listed: list[str]
) -> None:
    done = run(command)

    assert done.returncode == 0
    for word in listed:
        assert word in done.stdout
    for word in not_listed:
        assert word not in done.stdout
    assert "INSTANCE_ID                  default: random" in done.stdout
    if command[0] == "order-service":  # the defaults as INTERFACE §2 writes them
        assert "BREAKER_RESET_TIMEOUT_S      default: 30\n" in done.stdout
        assert "PRICE_DISCREPANCY_PCT        default: 1.0\n" in done.stdout


MALFORMED_HTTP = {
    "header-over-8-KiB": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "200-headers": b"GET /health HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    + b"\r\n",
    "bad-method": b"GARBAGE\r\n\r\n",
    "bad-content-length": b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
}


def _answer_to(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((LOOPBACK, port), timeout=5) as connection:
        connection.sendall(raw)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("service", ["order-service", "product-service"])
def test_http_that_cannot_be_parsed_gets_the_json_error_body_and_a_warning(service: str) -> None:
    """INTERFACE §4: every error body is {"error": ...}; aiohttp's own answer was plain text,
    logged as an ERROR with a traceback."""
    port = free_port()
    setting = "ORDER_SERVICE_PORT" if service == "order-service" else "PRODUCT_SERVICE_PORT"
    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def send_each() -> None:
        for name, raw in MALFORMED_HTTP.items():
            answers[name] = _answer_to(port, raw)

    _, lines = served_until_ready([service, "serve"], port, send_each, **{setting: str(port)})

    for name, (status, headers, body) in answers.items():
        assert status == 400, name
        assert headers["content-type"] == "application/json", name
        error = json.loads(body)["error"]
        assert error["code"] == "invalid_request", name
        assert error["message"] == "The request is not HTTP/1.1 this server can read", name
        assert 0 < len(error["details"]["reason"]) <= 200, name
    assert [line["level"] for line in lines if line["logger"] == "aiohttp.server"] == ["warning"] * 4
