"""The binary form of /v1 task calls: raw pickles instead of base64 in JSON.

A request whose body is `application/octet-stream` carries the raw args pickle; its
options travel as query parameters. A request that accepts `application/octet-stream`
gets the raw result pickle as the body (empty when there is none yet) and the rest
of the task view in `X-Faas-*` headers, one per field: `task_id` is
`X-Faas-Task-Id`, `error_kind` `X-Faas-Error-Kind`, and so on; fields without a
value are left out. `X-Faas-Error` is percent-encoded UTF-8 (header values are
latin-1 and one line). When the error text is longer than `MAX_ERROR_HEADER` once
encoded, the answer is the JSON view instead (`content-type: application/json`):
clients must look at the content type.

Saves what JSON costs a large payload: base64 (4/3 the bytes, ~6 ms/MB to decode
strictly) and parsing the JSON string around it, both ways.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError

from common.models import TaskRecord
from gateway.routes import OCTET_STREAM, FastJSON
from gateway.schemas import CallOptions
from gateway.views import task_view

MAX_ERROR_HEADER = 4096
"""Longest percent-encoded error sent as a header; a longer one gets the JSON view."""
HEADER_PREFIX = "x-faas-"


class BinaryCall(CallOptions):
    wait: float = Field(default=0, ge=0, description="seconds to wait for the task to end")


def wants_binary(request: Request) -> bool:
    return OCTET_STREAM in request.headers.get("accept", "")


def call_options(request: Request) -> BinaryCall:
    """The query parameters of a binary submit; 422 (as for JSON bodies) if invalid."""
    try:  # not strict: query values are text ("2.5"), converted as FastAPI would
        return BinaryCall.model_validate(dict(request.query_params), strict=False)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        ) from None


def header_name(field: str) -> str:
    """`error_kind` -> `x-faas-error-kind`."""
    return HEADER_PREFIX + field.replace("_", "-")


def task_response(record: TaskRecord, *, status_code: int = 200) -> Response:
    """The task as a raw result pickle with its view in headers (see the module
    docstring), or as the JSON view when its error is too long for a header."""
    view: dict[str, Any] = task_view(record, with_result=False)
    if view["error"] is not None:
        view["error"] = quote(view["error"], safe="")
        if len(view["error"]) > MAX_ERROR_HEADER:
            return FastJSON(task_view(record), status_code=status_code)
    headers = {header_name(k): str(v) for k, v in view.items() if v is not None}
    body = record.result if record.status.terminal and record.result is not None else b""
    return Response(body, status_code=status_code, media_type=OCTET_STREAM, headers=headers)


# OpenAPI: the binary forms next to the JSON ones.
SUBMIT_DOC: dict[str, Any] = {
    "requestBody": {
        "content": {
            OCTET_STREAM: {
                "schema": {"type": "string", "format": "binary"},
                "description": "the raw args pickle; function_id, deadline_s, "
                "max_attempts, idempotency_key and wait as query parameters",
            }
        }
    }
}
RESPONSE_DOC: dict[str, Any] = {
    "description": "the task; with accept: application/octet-stream, the raw result "
    "pickle with the other fields in X-Faas-* headers",
    "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
}
