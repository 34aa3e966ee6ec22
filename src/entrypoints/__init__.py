"""Entry points: the aiohttp applications, event consumers, CLI and the composition root."""

from entrypoints.apps import create_order_app, create_product_app
from entrypoints.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_order_app", "create_product_app"]
