"""The OpenAPI document of the HTTP API. The /v1 schemas are generated from the proto's message
descriptors (protobuf's canonical JSON mapping: lowerCamelCase names, 64-bit integers as strings),
so the document cannot drift from the gRPC API it mirrors."""

from __future__ import annotations

from functools import lru_cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from translation.v1 import translator_pb2 as pb

_SCALARS = {
    FieldDescriptor.TYPE_STRING: {"type": "string"}, FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"}, FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0}, FieldDescriptor.TYPE_INT32: {"type": "integer"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
}


def _schemas(descriptor: Descriptor, out: dict) -> dict:
    if descriptor.name in out:
        return {"$ref": f"#/components/schemas/{descriptor.name}"}
    out[descriptor.name] = {}
    props = {}
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            item = _schemas(f.message_type, out)
        else:
            item = dict(_SCALARS.get(f.type, {"type": "string"}))
        props[f.json_name] = {"type": "array", "items": item} if f.is_repeated else item
    out[descriptor.name] = {"type": "object", "properties": props}
    return {"$ref": f"#/components/schemas/{descriptor.name}"}


def _error(kind: str) -> dict:
    if kind == "libretranslate":
        return {"description": "error", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"error": {"type": "string"}}}}}}
    return {"description": "error (code: HTTP status, status: gRPC status name)", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


@lru_cache(maxsize=1)
def openapi() -> dict:
    schemas: dict = {}
    request = _schemas(pb.TranslateRequest.DESCRIPTOR, schemas)
    response = _schemas(pb.TranslateResponse.DESCRIPTOR, schemas)
    models = _schemas(pb.ListModelsResponse.DESCRIPTOR, schemas)
    schemas["Error"] = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "status": {"type": "string"}, "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "description": {"type": "string"}}}}}}}}
    lt_body = {"type": "object", "required": ["q", "source", "target"], "properties": {
        "q": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "source": {"type": "string", "description": "language code, or auto"},
        "target": {"type": "string"}, "format": {"type": "string", "enum": ["text", "html"]},
        "alternatives": {"type": "integer", "minimum": 0}, "api_key": {"type": "string"}}}
    errors = {str(c): _error("v1") for c in (400, 401, 404, 413, 429, 503, 504)}
    lt_errors = {str(c): _error("libretranslate") for c in (400, 403, 429, 503, 504)}
    json_body = lambda schema: {"required": True, "content": {"application/json": {"schema": schema}}}  # noqa: E731
    ok = lambda schema: {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {"title": "Attention translator", "version": "1",
                 "description": "gRPC's translation.v1.Translator in protobuf's canonical JSON (/v1) and a "
                                "LibreTranslate-compatible API. Authorization: Bearer TOKEN when the server has "
                                "one (LibreTranslate routes also take api_key)."},
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/translate": {"post": {"summary": "Translate (TranslateRequest -> TranslateResponse)",
                                       "requestBody": json_body(request), "responses": {**ok(response), **errors}}},
            "/v1/models": {"get": {"summary": "ListModels", "responses": {**ok(models), **errors}}},
            "/translate": {"post": {"summary": "LibreTranslate: translate",
                                    "requestBody": {"required": True, "content": {
                                        "application/json": {"schema": lt_body},
                                        "application/x-www-form-urlencoded": {"schema": lt_body}}},
                                    "responses": {**ok({"type": "object", "properties": {
                                        "translatedText": {"oneOf": [{"type": "string"},
                                                                     {"type": "array", "items": {"type": "string"}}]},
                                        "alternatives": {"type": "array"},
                                        "detectedLanguage": {"type": "object"}}}), **lt_errors}}},
            "/languages": {"get": {"summary": "LibreTranslate: languages", "responses": ok({
                "type": "array", "items": {"type": "object", "properties": {
                    "code": {"type": "string"}, "name": {"type": "string"},
                    "targets": {"type": "array", "items": {"type": "string"}}}}})}},
            "/detect": {"post": {"summary": "LibreTranslate: detect the language",
                                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                                     "type": "object", "properties": {"q": {"type": "string"},
                                                                      "api_key": {"type": "string"}}}}}},
                                 "responses": {**ok({"type": "array", "items": {"type": "object", "properties": {
                                     "confidence": {"type": "number"}, "language": {"type": "string"}}}}),
                                     **lt_errors}}},
            "/": {"get": {"summary": "The attention page (HTML)", "responses": {"200": {"description": "HTML"}}}},
        },
    }
