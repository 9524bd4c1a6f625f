"""The OpenAPI document of this server, built from the kinds it serves.

Served at ``/api/v1/openapi.json`` (public). It describes our paths, parameters, envelopes and
error object; kind specs are described at the envelope level — the field-by-field contract is
Flight Control's v1beta1 document, with which this API is wire-compatible.
"""

from __future__ import annotations

from functools import cache

from django.http import JsonResponse

from flightctl import __version__

KINDS = [
    # plural, kind, has status subresource, extra item subresources (suffix, methods)
    ("devices", "Device", True, [("lastseen", ["get"])]),
    ("fleets", "Fleet", True, []),
    ("repositories", "Repository", False, []),
    ("resourcesyncs", "ResourceSync", False, []),
    ("enrollmentrequests", "EnrollmentRequest", True, [("approval", ["put"])]),
    ("certificatesigningrequests", "CertificateSigningRequest", False, [("approval", ["put"])]),
]

LIST_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                 "maximum": 1000}},
    {"name": "continue", "in": "query", "schema": {"type": "string"}},
    {"name": "labelSelector", "in": "query", "schema": {"type": "string"}},
    {"name": "fieldSelector", "in": "query", "schema": {"type": "string"}},
]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(code): {"description": "error", **_json(_ref("Status"))} for code in codes}


def _kind_paths(plural: str, kind: str, status: bool, extras) -> dict:
    obj = _ref(kind)
    paths = {
        f"/api/v1/{plural}": {
            "get": {"operationId": f"list{kind}s", "parameters": LIST_PARAMS,
                    "responses": {"200": {"description": "OK", **_json(_ref(f"{kind}List"))},
                                  **_errors(400, 401)}},
            "post": {"operationId": f"create{kind}", "requestBody": _json(obj),
                     "responses": {"201": {"description": "Created", **_json(obj)},
                                   **_errors(400, 401, 409)}},
        },
        f"/api/v1/{plural}/{{name}}": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "get": {"operationId": f"get{kind}",
                    "responses": {"200": {"description": "OK", **_json(obj)},
                                  **_errors(401, 404)}},
            "put": {"operationId": f"replace{kind}", "requestBody": _json(obj),
                    "responses": {"200": {"description": "OK", **_json(obj)},
                                  "201": {"description": "Created", **_json(obj)},
                                  **_errors(400, 401, 409)}},
            "patch": {"operationId": f"patch{kind}",
                      "requestBody": {"content": {"application/json-patch+json": {
                          "schema": _ref("PatchRequest")}}},
                      "responses": {"200": {"description": "OK", **_json(obj)},
                                    **_errors(400, 401, 404, 409)}},
            "delete": {"operationId": f"delete{kind}",
                       "responses": {"200": {"description": "OK", **_json(_ref("Status"))},
                                     **_errors(401, 409)}},
        },
    }
    if status:
        paths[f"/api/v1/{plural}/{{name}}/status"] = {
            "get": {"operationId": f"get{kind}Status",
                    "responses": {"200": {"description": "OK", **_json(obj)}}},
            "put": {"operationId": f"replace{kind}Status", "requestBody": _json(obj),
                    "responses": {"200": {"description": "OK", **_json(obj)}}},
            "patch": {"operationId": f"patch{kind}Status",
                      "responses": {"200": {"description": "OK", **_json(obj)}}},
        }
    for suffix, methods in extras:
        paths[f"/api/v1/{plural}/{{name}}/{suffix}"] = {
            method: {"operationId": f"{method}{kind}{suffix.title()}",
                     "responses": {"200": {"description": "OK"}}}
            for method in methods
        }
    return paths


def _kind_schemas(kind: str) -> dict:
    return {
        kind: {
            "type": "object",
            "required": ["apiVersion", "kind", "metadata"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string", "enum": [kind]},
                "metadata": _ref("ObjectMeta"),
                "spec": {"type": "object"},
                "status": {"type": "object"},
            },
        },
        f"{kind}List": {
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": _ref("ListMeta"),
                "items": {"type": "array", "items": _ref(kind)},
            },
        },
    }


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_APPNAME = {"name": "appname", "in": "path", "required": True, "schema": {"type": "string"}}
ADD_DEVICES_SUMMARY = {"name": "addDevicesSummary", "in": "query", "schema": {"type": "boolean"}}


def _action_paths() -> dict:
    """Operations beyond CRUD: decommission, application lifecycle, registry checks."""

    def operation(operation_id: str, kind: str, body: dict | None = None) -> dict:
        op = {"operationId": operation_id,
              "responses": {"200": {"description": "OK", **_json(_ref(kind))},
                            **_errors(400, 401, 404, 409)}}
        if body:
            op["requestBody"] = {"required": True, **_json(body)}
        return op

    paths = {"/api/v1/devices/{name}/decommission": {"parameters": [_NAME], "put": operation(
        "decommissionDevice", "Device",
        {"type": "object", "required": ["target"], "properties": {
            "target": {"type": "string", "enum": ["Unenroll", "FactoryReset"]}}})}}
    image_name = {"type": "string", "minLength": 1, "maxLength": 255}
    tag = {"type": "string", "pattern": r"^[\w][\w.-]{0,127}$"}
    for check, operation_id, fields in (
            ("check-oci-tag", "checkRepositoryOciTag", {"imageName": image_name, "tag": tag}),
            ("check-oci-image", "checkRepositoryOciImage", {"imageName": image_name})):
        paths[f"/api/v1/repositories/{{name}}/{check}"] = {
            "parameters": [_NAME], "post": operation(operation_id, "CheckRepositoryOciResult", {
                "type": "object", "required": list(fields), "properties": fields,
                "additionalProperties": False})}
    for plural, kind, actions in (("devices", "Device", ("stop", "start", "restart")),
                                  ("fleets", "Fleet", ("stop", "start"))):
        for action in actions:
            paths[f"/api/v1/{plural}/{{name}}/applications/{{appname}}/actions/{action}"] = {
                "parameters": [_NAME, _APPNAME],
                "post": operation(f"{action}{kind}Application", kind),
            }
    return paths


@cache
def document() -> dict:
    paths: dict = {
        "/api/v1/version": {"get": {"operationId": "getVersion",
                                    "responses": {"200": {"description": "OK"}}}},
        "/api/v1/events": {"get": {"operationId": "listEvents",
                                   "parameters": LIST_PARAMS[:2] + LIST_PARAMS[3:],
                                   "responses": {"200": {"description": "OK"}}}},
        "/api/v1/auth/config": {"get": {"operationId": "authConfig", "security": [],
                                        "responses": {"200": {"description": "OK"}}}},
    }
    schemas: dict = {
        "Status": {
            "type": "object",
            "required": ["apiVersion", "kind", "status", "code", "reason", "message"],
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "status": {"type": "string", "enum": ["Success", "Failure"]},
                "code": {"type": "integer"}, "reason": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "ObjectMeta": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 253},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "generation": {"type": "integer", "format": "int64", "readOnly": True},
                "resourceVersion": {"type": "string"},
                "owner": {"type": "string", "readOnly": True},
                "creationTimestamp": {"type": "string", "format": "date-time",
                                      "readOnly": True},
            },
        },
        "CheckRepositoryOciResult": {
            "type": "object", "required": ["accessible"], "additionalProperties": False,
            "properties": {"accessible": {"type": "boolean"}, "errorCode": {"type": "integer"},
                           "errorMessage": {"type": "string"}},
        },
        "ListMeta": {"type": "object", "properties": {
            "continue": {"type": "string"},
            "remainingItemCount": {"type": "integer", "format": "int64"}}},
        "PatchRequest": {"type": "array", "items": {"type": "object", "required": ["op", "path"],
                         "properties": {"op": {"type": "string",
                                               "enum": ["add", "replace", "remove", "test"]},
                                        "path": {"type": "string"}, "value": {}}}},
    }
    for plural, kind, status, extras in KINDS:
        paths.update(_kind_paths(plural, kind, status, extras))
        schemas.update(_kind_schemas(kind))
    paths.update(_action_paths())
    fleets = paths["/api/v1/fleets"]["get"]
    fleets["parameters"] = [*fleets["parameters"], ADD_DEVICES_SUMMARY]
    paths["/api/v1/fleets/{name}"]["get"]["parameters"] = [ADD_DEVICES_SUMMARY]
    return {
        "openapi": "3.0.1",
        "info": {"title": "Flight Control for Python API", "version": __version__,
                 "description": "Wire-compatible with Flight Control's v1beta1 user API."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_view(request):
    return JsonResponse(document())
