"""The API documents match the code: OpenAPI against the routes, AsyncAPI against the event models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import validate

from adapters.wire.converter import camel
from domain.events import EVENT_TYPES, OrderCreatedItem
from domain.products import Product
from entrypoints import Settings, create_order_app, create_product_app
from entrypoints.http.ops import OPENAPI

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method in METHODS and route.resource is not None
    }


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


@pytest.mark.parametrize("factory", [create_order_app, create_product_app])
def test_openapi_is_valid_and_lists_exactly_the_routes(factory: Any) -> None:
    app = factory(Settings(admin_token="t"))
    document = app[OPENAPI]
    validate(document)
    assert documented(document) == routes_of(app)


def test_openapi_error_responses_use_the_one_error_body() -> None:
    document = create_order_app(Settings())[OPENAPI]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def load_asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return loaded


def test_asyncapi_has_a_channel_for_every_event_type_and_the_dead_letters() -> None:
    channels = load_asyncapi()["channels"]
    for event_type in EVENT_TYPES:
        assert event_type in channels
    assert "deadletter.{subject}" in channels
    assert "product.details_provided.{instance}" in channels


@pytest.mark.parametrize(("event_type", "cls"), sorted(EVENT_TYPES.items()))
def test_asyncapi_payload_fields_match_the_event_model(event_type: str, cls: type) -> None:
    schemas = load_asyncapi()["components"]["schemas"]
    schema = schemas[cls.__name__]
    assert set(schema["properties"]) == {camel(f.name) for f in attrs.fields(cls)}
    optional = {"refreshMode"}
    assert set(schema["required"]) == {camel(f.name) for f in attrs.fields(cls)} - optional


@pytest.mark.parametrize("cls", [Product, OrderCreatedItem])
def test_asyncapi_nested_schemas_match_their_models(cls: type) -> None:
    schema = load_asyncapi()["components"]["schemas"][cls.__name__]
    assert set(schema["required"]) == {camel(f.name) for f in attrs.fields(cls)}
