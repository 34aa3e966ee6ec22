"""The embedded mode's banner says where orders are priced when that is not its own Product Service."""

from __future__ import annotations

from entrypoints import Settings
from entrypoints.cli import _embedded_banner

ORDER_URL, PRODUCT_URL = "http://127.0.0.1:8080", "http://127.0.0.1:8081"


def test_the_banner_names_an_exported_product_service_url() -> None:
    settings = Settings(
        product_service_url="http://user:secret@elsewhere:9000", admin_token="dev-admin-token"
    )
    banner = _embedded_banner(settings, ORDER_URL, PRODUCT_URL)
    [line] = [line for line in banner.splitlines() if line.startswith("Orders priced by")]
    assert "elsewhere:9000" in line
    assert "secret" not in banner


def test_the_banner_says_nothing_more_when_orders_go_to_its_own_product_service() -> None:
    settings = Settings(product_service_url=PRODUCT_URL, admin_token="dev-admin-token")
    assert "Orders priced by" not in _embedded_banner(settings, ORDER_URL, PRODUCT_URL)
