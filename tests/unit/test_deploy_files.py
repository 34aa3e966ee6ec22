"""The compose stack and Prometheus config parse and point at the ports the services listen on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from entrypoints import Settings

ROOT = Path(__file__).resolve().parents[2]
METRIC_NAMES = (
    "circuit_breaker_state",
    "events_processed_total",
    "outbox_pending",
    "price_discrepancies_total",
    "async_request_timeouts_total",
)


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_compose_runs_redis_nats_both_services_and_prometheus() -> None:
    services = load("docker-compose.yml")["services"]
    assert set(services) == {"redis", "nats", "product-service", "order-service", "prometheus"}
    assert "-js" in services["nats"]["command"]
    order = services["order-service"]["environment"]
    assert order["PRODUCT_SERVICE_URL"] == "http://product-service:8081"
    assert order["REDIS_URL"].startswith("redis://redis:6379")
    assert order["NATS_URL"] == "nats://nats:4222"
    assert "8080:8080" in services["order-service"]["ports"]
    assert "8081:8081" in services["product-service"]["ports"]


def test_compose_environment_is_accepted_by_the_settings() -> None:
    services = load("docker-compose.yml")["services"]
    for name in ("order-service", "product-service"):
        env = {k: v for k, v in services[name]["environment"].items() if "${" not in str(v)}
        Settings.from_env(env)


def test_prometheus_scrapes_both_services_on_their_ports() -> None:
    config = load("deploy/prometheus.yml")
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "order-service": ["order-service:8080"],
        "product-service": ["product-service:8081"],
    }
    assert all(job["metrics_path"] == "/metrics" for job in config["scrape_configs"])


def test_alerts_read_metrics_the_services_export() -> None:
    from adapters.metrics import ServiceMetrics

    exported = ServiceMetrics().render().decode()
    rules = [rule for group in load("deploy/alerts.yml")["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        used = [name for name in METRIC_NAMES if name in rule["expr"]]
        assert used, rule["alert"]
        for name in used:
            assert name.removesuffix("_total") in exported, (rule["alert"], name)


def test_the_image_listens_beyond_its_own_loopback() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ORDER_SERVICE_HOST=0.0.0.0" in dockerfile
    assert "PRODUCT_SERVICE_HOST=0.0.0.0" in dockerfile
