"""The reference Product Service's HTTP API (INTERFACE §3)."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from adapters.wire.http_json import product_to_wire
from application.catalog import NewProduct
from domain.errors import ProductNotFound
from domain.products import ProductPatch
from entrypoints.containers import ProductService
from entrypoints.http.errors import ordering_error_response
from entrypoints.http.ops import OUTBOX_WAKEUP
from entrypoints.http.parsing import json_response, read_body
from entrypoints.http.schemas import (
    BatchRequest,
    CreateProductRequest,
    PatchProductRequest,
    check_batch,
    check_id,
    check_new_product,
    check_patch,
)

PRODUCT_SERVICE = web.AppKey("product_service", ProductService)

routes = web.RouteTableDef()


def _not_found(error: ProductNotFound) -> web.Response:
    return ordering_error_response(error, not_found_status=404)


@routes.get("/api/v1/products/{id}")
async def get_product(request: web.Request) -> web.Response:
    product_id = request.match_info["id"]
    check_id("id", product_id)
    try:
        product = await request.app[PRODUCT_SERVICE].catalog().get(product_id)
    except ProductNotFound as missing:
        return _not_found(missing)
    return json_response(product_to_wire(product))


@routes.post("/api/v1/products/batch")
async def get_products(request: web.Request) -> web.Response:
    body = await read_body(request, BatchRequest)
    check_batch(body)
    products = await request.app[PRODUCT_SERVICE].catalog().get_many(body.ids)
    return json_response([product_to_wire(p) for p in products])


@routes.post("/api/v1/products")
async def create_product(request: web.Request) -> web.Response:
    body = await read_body(request, CreateProductRequest)
    check_new_product(body)
    product = (
        await request.app[PRODUCT_SERVICE]
        .catalog()
        .create(
            NewProduct(
                id=body.id,
                name=body.name,
                base_price=body.base_price,
                current_price=body.current_price,
                currency=body.currency,
                status=body.status,
                quantity_available=body.quantity_available,
            )
        )
    )
    request.app[OUTBOX_WAKEUP].set()
    response = json_response(product_to_wire(product), status=201)
    # percent-encoded: a client-chosen id may hold characters a header cannot carry (\n, \x1e, ...)
    response.headers["Location"] = f"/api/v1/products/{quote(product.id, safe='')}"
    return response


@routes.patch("/api/v1/products/{id}")
async def patch_product(request: web.Request) -> web.Response:
    product_id = request.match_info["id"]
    check_id("id", product_id)
    body = await read_body(request, PatchProductRequest)
    check_patch(body)
    patch = ProductPatch(
        name=body.name,
        base_price=body.base_price,
        current_price=body.current_price,
        status=body.status,
        quantity_available=body.quantity_available,
    )
    try:
        product = await request.app[PRODUCT_SERVICE].catalog().change(product_id, patch)
    except ProductNotFound as missing:
        return _not_found(missing)
    request.app[OUTBOX_WAKEUP].set()
    return json_response(product_to_wire(product))
