"""Credentials in REDIS_URL / NATS_URL and the admin token never show in answers, logs or repr(settings)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from entrypoints import Settings, SettingsError, create_order_app, create_product_app
from entrypoints.logs import configure_logging
from entrypoints.settings import mask_url

REDIS_PASSWORD = "r3dis-s3cret"
NATS_PASSWORD = "n4ts-s3cret"
NATS_TOKEN = "n4ts-t0ken"
ADMIN_TOKEN = "4dmin-t0ken-s3cret"
HTTP_PASSWORD = "htt9-s3cret"
SECRETS = (REDIS_PASSWORD, NATS_PASSWORD, NATS_TOKEN, ADMIN_TOKEN, HTTP_PASSWORD)

UNREACHABLE = Settings(
    # port 1 on loopback refuses at once: every dependency is down, the app must still answer
    redis_url=f"redis://user:{REDIS_PASSWORD}@127.0.0.1:1/0",
    nats_url=f"nats://user:{NATS_PASSWORD}@127.0.0.1:1,nats://{NATS_TOKEN}@127.0.0.1:2",
    product_service_url=f"http://svc:{HTTP_PASSWORD}@127.0.0.1:1",
    admin_token=ADMIN_TOKEN,
    product_request_timeout_ms=100,
    retry_max_attempts=1,
    async_request_timeout_ms=100,
    log_level="DEBUG",
)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """Everything logged, as the service's own JSON log lines and as pytest saw the records."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", "json", "test", "secrets")
    root.addHandler(caplog.handler)
    try:
        yield (
            lambda: capsys.readouterr().err + caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def answers(app: web.Application, calls: list[tuple[str, str, dict[str, str], bytes | None]]) -> str:
    """Start the app (its startup is logged too), make the calls, and return every answer as text."""
    seen = []
    async with TestClient(TestServer(app)) as client:
        for method, path, headers, body in calls:
            response = await client.request(method, path, headers=headers, data=body)
            seen.append(
                f"{method} {path} -> {response.status} {dict(response.headers)} {await response.text()}"
            )
    return "\n".join(seen)


JSON = {"Content-Type": "application/json"}
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ORDER_CALLS = [
    ("GET", "/health", {}, None),
    ("GET", "/ready", {}, None),
    ("GET", "/metrics", {}, None),
    ("GET", "/openapi.json", {}, None),
    ("GET", "/no/such/route", {}, None),
    ("POST", "/api/v1/orders", JSON, b"{not json"),
    ("POST", "/api/v1/orders", JSON, b'{"userId": "u-1", "items": [{"productId": "p-1", "quantity": 1}]}'),
    ("GET", "/api/v1/orders/o-1", {}, None),
    ("POST", "/admin/refresh", {}, None),
    ("POST", "/admin/refresh", {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, None),
    ("POST", "/admin/refresh", {"Authorization": f"Basic {ADMIN_TOKEN}"}, None),
    ("POST", "/admin/refresh", BEARER, None),
    ("POST", "/admin/products/p-1/refresh", BEARER, None),
    ("GET", "/health", {}, None),
    ("GET", "/metrics", {}, None),
]
PRODUCT_CALLS = [
    ("GET", "/health", {}, None),
    ("GET", "/ready", {}, None),
    ("GET", "/metrics", {}, None),
    ("GET", "/api/v1/products/p-1", {}, None),
    ("POST", "/api/v1/products", JSON, b'{"name": "x"}'),
    (
        "POST",
        "/api/v1/products",
        JSON,
        b'{"name": "x", "basePrice": 1, "currentPrice": 1, "currency": "USD", "status": "ACTIVE",'
        b' "quantityAvailable": 1}',
    ),
    ("GET", "/metrics", {}, None),
]


@pytest.mark.parametrize(
    ("factory", "calls"),
    [(create_order_app, ORDER_CALLS), (create_product_app, PRODUCT_CALLS)],
    ids=["order-service", "product-service"],
)
async def test_no_secret_in_any_answer_or_log_with_every_dependency_down(
    factory: Callable[[Settings], web.Application],
    calls: list[tuple[str, str, dict[str, str], bytes | None]],
    logs: Callable[[], str],
) -> None:
    seen = await answers(factory(UNREACHABLE), calls)
    assert "/health -> 200" in seen
    assert "/ready -> 503" in seen
    assert leaked(seen) == []
    logged = logs()
    assert "redis" in logged.lower()  # the logs did capture the failing dependencies
    assert leaked(logged) == []


def test_repr_of_the_settings_masks_credentials_and_the_token() -> None:
    shown = repr(UNREACHABLE)
    assert leaked(shown) == []
    assert "redis://user:***@127.0.0.1:1/0" in shown
    assert "admin_token='***'" in shown


def test_masked_settings_keep_the_hosts_and_hide_the_credentials() -> None:
    masked = UNREACHABLE.masked()
    assert leaked(repr(masked)) == []
    assert masked["redis_url"] == "redis://user:***@127.0.0.1:1/0"
    assert masked["nats_url"] == "nats://user:***@127.0.0.1:1,nats://***@127.0.0.1:2"
    assert masked["product_service_url"] == "http://svc:***@127.0.0.1:1"
    assert masked["admin_token"] == "set"
    assert Settings().masked()["admin_token"] is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@127.0.0.1:1/0", "redis://user:***@127.0.0.1:1/0"),
        ("rediss://:s3cret@cache.internal:6380", "rediss://:***@cache.internal:6380"),
        ("nats://s3cret@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
        ("nats://a:s3cret@n1:4222, nats://b:s3cret@n2:4222", "nats://a:***@n1:4222,nats://b:***@n2:4222"),
        ("redis://user:s3cret@[::1]:6379/0", "redis://user:***@[::1]:6379/0"),
        ("redis://user:s3cret@host:99999/0", "redis://user:***@host:99999/0"),
        ("redis://user:p@s3cret@host/0", "redis://user:***@host/0"),
        ("redis://host:6379/0?password=s3cret&db=2", "redis://host:6379/0?password=***&db=2"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        (None, None),
    ],
)
def test_mask_url_hides_every_credential_of_every_url(url: str | None, shown: str | None) -> None:
    assert mask_url(url) == shown


def test_a_rejected_url_setting_does_not_echo_its_credentials() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": f"http://user:{REDIS_PASSWORD}@127.0.0.1:6379"})
    assert "REDIS_URL" in str(caught.value)
    assert leaked(str(caught.value)) == []
