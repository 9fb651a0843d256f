"""A notebook API's description: OpenAPI 3 (/_api/spec/openapi.json) and Swagger 2
(/_api/spec/swagger.json, Kernel Gateway's address), both with {name} path templates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .parse import NotebookApi, Route

ERROR_SCHEMA = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}, "reason": {"type": ["string", "null"]}},
}
ERRORS = {
    "404": "No route has this path",
    "405": "The path has no route for this method",
    "500": "The cell raised, or its ResponseInfo was malformed",
    "502": "The kernel died while serving the request",
    "503": "Every kernel is busy and the queue is full (see Retry-After)",
    "504": "The request ran over its timeout; the kernel was interrupted",
}


def operation_id(route: Route) -> str:
    """The route's own operationId, else one made of its verb and path (`:name` as `by_name`)."""
    given = route.operation.get("operationId")
    if isinstance(given, str) and given:
        return given
    path = re.sub(r":([A-Za-z0-9_]+)", r"by_\1", route.path)
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{route.verb.lower()}_{words or 'root'}"


def operation_ids(routes: Sequence[Route]) -> list[str]:
    """One operationId per route, unique in the document as OpenAPI requires: a repeat gets _2, _3."""
    ids: list[str] = []
    taken: set[str] = set()
    for route in routes:
        base = candidate = operation_id(route)
        n = 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        ids.append(candidate)
    return ids


def _summary(route: Route) -> str:
    return str(route.operation.get("summary") or f"Runs the notebook cell annotated {route.verb} {route.path}")


def openapi(api: NotebookApi, server_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route, op_id in zip(api.routes, operation_ids(api.routes), strict=True):
        errors = {
            code: {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for code, text in ERRORS.items()
        }
        operation: dict[str, Any] = {
            "operationId": op_id,
            "summary": _summary(route),
            "responses": {
                "200": {
                    "description": "What the cell printed, displayed or returned",
                    "content": {"*/*": {"schema": {}}},
                },
                "default": {
                    "description": "A status the notebook's ResponseInfo chose",
                    "content": {"*/*": {"schema": {}}},
                },
                **errors,
            },
        }
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for p in route.params
        ]
        if params:
            operation["parameters"] = params
        if route.verb in ("POST", "PUT", "PATCH", "DELETE"):
            operation["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": {}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            }
        paths.setdefault(route.template, {})[route.verb.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": api.title,
            "version": "0.0.0",
            "description": f"Endpoints of the notebook {api.path.name}, served by Portico.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "'token <token>'"}
            },
        },
        "security": [{"token": []}],
    }


def swagger(api: NotebookApi, base_path: str) -> dict[str, Any]:
    """Kernel Gateway's swagger.json, valid Swagger 2; the swagger variant's own document when it is one."""
    if api.document is not None and str(api.document.get("swagger", "")).startswith("2"):
        return api.document
    paths: dict[str, dict[str, Any]] = {}
    for route, op_id in zip(api.routes, operation_ids(api.routes), strict=True):
        operation: dict[str, Any] = {
            "operationId": op_id,
            "summary": _summary(route),
            "produces": ["text/plain", "application/json"],
            "responses": {
                "200": {"description": "Success"},
                **{code: {"description": text} for code, text in ERRORS.items()},
            },
        }
        if route.params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "type": "string"} for p in route.params
            ]
        paths.setdefault(route.template, {})[route.verb.lower()] = operation
    return {
        "swagger": "2.0",
        "info": {"title": api.title, "version": "0.0.0"},
        "basePath": base_path.rstrip("/") or "/",
        "paths": paths,
    }
