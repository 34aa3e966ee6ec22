"""OpenAPI 3 documents of both services, built from one table of routes per service."""

from __future__ import annotations

from typing import Any

from domain.products import MAX_NAME_LENGTH, MAX_STOCK, MAX_VERSION

ERROR = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request (the message names the field)",
        401: "No admin token sent",
        403: "Wrong admin token, or admin routes disabled",
        404: "Not found",
        409: "Conflict",
        413: "Body larger than 1 MiB",
        422: "Rule broken (unknown, discontinued or inactive product)",
        503: "A dependency is unavailable",
    }
    return {str(code): _json(ERROR, text[code]) for code in codes}


MONEY = {"type": "number", "minimum": 0, "exclusiveMaximum": 1000000000, "multipleOf": 0.01}
AMOUNT = {"type": "number", "minimum": 0, "multipleOf": 0.01}
"""A sum of prices times quantities: not bounded like one price."""
TIMESTAMP = {"type": "string", "format": "date-time"}
ID = {"type": "string", "minLength": 1, "maxLength": 128}
NOT_BLANK = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""Some character that is not whitespace, as Python's str.isspace (the server's test) has it."""
NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": NOT_BLANK}
PATCHABLE: dict[str, Any] = {
    "name": NAME,
    "basePrice": MONEY,
    "currentPrice": MONEY,
    "status": {"type": "string", "enum": ["ACTIVE", "INACTIVE", "DISCONTINUED"]},
    "quantityAvailable": {"type": "integer", "minimum": 0, "maximum": MAX_STOCK},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z_]+$"},
                    "message": {"type": "string"},
                    "details": {
                        "description": "On a 400: {field: the first field at fault, problems: [{field, "
                        "message}] for every field at fault, the first one's message being `message`}, "
                        "plus `reason` when the body is not readable JSON. Other errors: an object "
                        "naming what the error is about (e.g. productId), or null."
                    },
                },
            }
        },
    },
    "Product": {
        "type": "object",
        "required": [
            "id",
            "name",
            "basePrice",
            "currentPrice",
            "currency",
            "status",
            "quantityAvailable",
            "version",
            "updatedAt",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "basePrice": MONEY,
            "currentPrice": MONEY,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "status": {"type": "string", "enum": ["ACTIVE", "INACTIVE", "DISCONTINUED"]},
            "quantityAvailable": {"type": "integer", "minimum": 0, "maximum": MAX_STOCK},
            "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
            "updatedAt": TIMESTAMP,
        },
    },
    "NewProduct": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "name",
            "basePrice",
            "currentPrice",
            "currency",
            "status",
            "quantityAvailable",
        ],
        "properties": {
            "id": {"oneOf": [ID, {"type": "null"}], "description": "null or absent: one is made up"},
            "name": NAME,
            "basePrice": MONEY,
            "currentPrice": MONEY,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "status": {"type": "string", "enum": ["ACTIVE", "INACTIVE", "DISCONTINUED"]},
            "quantityAvailable": {"type": "integer", "minimum": 0, "maximum": MAX_STOCK},
        },
    },
    "ProductPatch": {
        "type": "object",
        "description": "A null field is the same as one left out; at least one field must be non-null.",
        "additionalProperties": False,
        "properties": {name: {"oneOf": [schema, {"type": "null"}]} for name, schema in PATCHABLE.items()},
        "anyOf": [
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in PATCHABLE
        ],
    },
    "BatchRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["ids"],
        "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": 100, "items": ID}},
    },
    "CreateOrder": {
        "type": "object",
        "additionalProperties": False,
        "required": ["userId", "items"],
        "properties": {
            "userId": {**ID, "pattern": NOT_BLANK},
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["productId", "quantity"],
                    "properties": {
                        "productId": ID,
                        "variantId": {"oneOf": [ID, {"type": "null"}]},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                },
            },
        },
    },
    "Order": {
        "type": "object",
        "required": [
            "id",
            "userId",
            "status",
            "items",
            "totalAmount",
            "currency",
            "flags",
            "priceSource",
            "createdAt",
        ],
        "properties": {
            "id": {"type": "string"},
            "userId": {"type": "string"},
            "status": {"type": "string", "enum": ["CREATED"]},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["productId", "variantId", "name", "quantity", "unitPrice"],
                    "properties": {
                        "productId": {"type": "string"},
                        "variantId": {"type": ["string", "null"]},
                        "name": {"type": "string"},
                        "quantity": {"type": "integer"},
                        "unitPrice": MONEY,
                    },
                },
            },
            "totalAmount": AMOUNT,
            "currency": {"type": "string"},
            "flags": {
                "type": "array",
                "items": {"type": "string", "enum": ["DISCONTINUED_PRODUCT", "PRICE_REVIEW"]},
            },
            "priceSource": {"type": "string", "enum": ["product-service", "cache"]},
            "createdAt": TIMESTAMP,
        },
    },
    "OrderList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Order")}},
    },
    "DiscrepancyResult": {
        "type": "object",
        "required": ["hasDiscrepancies", "discrepancies", "totalDifference", "requiresReview"],
        "properties": {
            "hasDiscrepancies": {"type": "boolean"},
            "discrepancies": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["productId", "orderPrice", "currentPrice", "difference"],
                    "properties": {
                        "productId": {"type": "string"},
                        "orderPrice": MONEY,
                        "currentPrice": MONEY,
                        "difference": {"type": "number", "description": "percent"},
                    },
                },
            },
            "totalDifference": {"type": "number"},
            "requiresReview": {"type": "boolean"},
        },
    },
    "RefreshedProduct": {
        "type": "object",
        "required": ["product", "source", "elapsedMs"],
        "properties": {
            "product": _ref("Product"),
            "source": {"type": "string", "enum": ["event", "http", "cache"]},
            "elapsedMs": {"type": "number"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "checks": {"type": "object"},
        },
    },
}

ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": ID}


def _ops_paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "summary": "Liveness and each dependency's state",
                "responses": {"200": _json(_ref("Health"), "Health")},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: dependencies answer and consumers are subscribed",
                "responses": {"200": _json({"type": "object"}, "Ready"), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3")},
            }
        },
    }


def _document(title: str, description: str, paths: dict[str, Any], security: bool) -> dict[str, Any]:
    paths = {**paths, **_ops_paths()}
    components: dict[str, Any] = {"schemas": _schemas_used_by(paths)}
    if security:
        components["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "paths": paths,
        "components": components,
    }


def _schemas_used_by(paths: dict[str, Any]) -> dict[str, Any]:
    """The schemas `paths` refer to, directly or through other schemas: each service's
    document holds its own (the Product Service's no Order)."""
    used: dict[str, Any] = {}
    waiting = _refs_in(paths)
    while waiting:
        name = waiting.pop()
        if name not in used:
            used[name] = SCHEMAS[name]
            waiting |= _refs_in(SCHEMAS[name])
    return {name: SCHEMAS[name] for name in SCHEMAS if name in used}


def _refs_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {ref.rsplit("/", 1)[1] for key, ref in node.items() if key == "$ref" and isinstance(ref, str)}
        return found.union(*(_refs_in(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs_in(item) for item in node))
    return set()


def order_openapi() -> dict[str, Any]:
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    paths = {
        "/api/v1/orders": {
            "post": {
                "summary": "Price and accept an order",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CreateOrder")}},
                },
                "responses": {
                    "201": _json(_ref("Order"), "Created"),
                    "200": _json(_ref("Order"), "Repeat of an Idempotency-Key"),
                    **_errors(400, 409, 413, 422, 503),
                },
            },
            "get": {
                "summary": "Orders holding a product and/or carrying a flag (else the most recent)",
                "parameters": [
                    {"name": "productId", "in": "query", "schema": ID},
                    {
                        "name": "flag",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["DISCONTINUED_PRODUCT", "PRICE_REVIEW"],
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {"200": _json(_ref("OrderList"), "Orders"), **_errors(400, 503)},
            },
        },
        "/api/v1/orders/{id}": {
            "get": {
                "summary": "One order",
                "parameters": [ID_PARAM],
                "responses": {"200": _json(_ref("Order"), "The order"), **_errors(400, 404, 503)},
            }
        },
        "/api/v1/orders/{id}/pricing-validation": {
            "post": {
                "summary": "Compare the order with the latest prices; flag PRICE_REVIEW if needed",
                "parameters": [ID_PARAM],
                "responses": {
                    "200": {
                        **_json(_ref("DiscrepancyResult"), "Result"),
                        "headers": {
                            "X-Price-Source": {
                                "description": "product-service, or cache when the Product Service was down",
                                "schema": {"type": "string", "enum": ["product-service", "cache"]},
                            }
                        },
                    },
                    **_errors(400, 404, 503),
                },
            }
        },
        "/admin/refresh": {
            "post": {
                "summary": "Run the background refresh of active products now",
                "security": admin,
                "responses": {"202": _json({"type": "object"}, "Started"), **_errors(401, 403, 503)},
            }
        },
        "/admin/products/{id}/refresh": {
            "post": {
                "summary": "Refresh one product: async request-reply, else HTTP, else cache",
                "security": admin,
                "parameters": [ID_PARAM],
                "responses": {
                    "200": _json(_ref("RefreshedProduct"), "Refreshed"),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
    }
    return _document("Order Service", "Prices and accepts orders with product data.", paths, True)


def product_openapi() -> dict[str, Any]:
    paths = {
        "/api/v1/products": {
            "post": {
                "summary": "Create a product (publishes product.created)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewProduct")}},
                },
                "responses": {"201": _json(_ref("Product"), "Created"), **_errors(400, 409, 413)},
            }
        },
        "/api/v1/products/batch": {
            "post": {
                "summary": "Products by ids; unknown ids are left out",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchRequest")}},
                },
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Product")}, "Found"),
                    **_errors(400, 413),
                },
            }
        },
        "/api/v1/products/{id}": {
            "get": {
                "summary": "One product",
                "parameters": [ID_PARAM],
                "responses": {"200": _json(_ref("Product"), "The product"), **_errors(400, 404)},
            },
            "patch": {
                "summary": "Change a product (publishes its events)",
                "parameters": [ID_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ProductPatch")}},
                },
                "responses": {"200": _json(_ref("Product"), "Changed"), **_errors(400, 404, 413)},
            },
        },
    }
    return _document("Product Service", "The reference Product Service.", paths, False)
