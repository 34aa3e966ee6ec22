"""Use case: flag orders (for a discontinued product or a price review), counting each new flag once."""

from __future__ import annotations

import attrs

from application.ports import OrderStore, Telemetry
from domain.orders import OrderFlag


@attrs.frozen
class OrderFlagger:
    orders: OrderStore
    telemetry: Telemetry

    async def flag(self, order_id: str, flag: OrderFlag) -> bool:
        added = await self.orders.add_flag(order_id, flag)
        if added:
            self.telemetry.order_flagged(flag)
        return added

    async def flag_orders_holding(self, product_id: str, flag: OrderFlag) -> int:
        """Flag every order holding `product_id`; returns how many were newly flagged."""
        return sum(
            [await self.flag(order_id, flag) for order_id in await self.orders.ids_holding(product_id)]
        )
