"""Errors as OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`, and the app's handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from swiftcli.errors import SwiftError

logger = logging.getLogger("swiftcli.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
          503: "service_unavailable"}


class APIError(Exception):
    """An error the server answers with its status code and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None,
               type: str | None = None) -> dict[str, Any]:
    from swiftcli.server.failures import redact

    kind = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": redact(message), "type": kind, "param": param, "code": code}}


# Anthropic's error types by status (its API answers 529 overloaded_error where we answer 503).
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error"}
ANTHROPIC_PREFIX = "/v1/messages"


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's envelope `{"type": "error", "error": {"type", "message"}}`, used on /v1/messages."""
    from swiftcli.server.failures import redact

    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": redact(message)}}


def error_body_for(path: str, status: int, message: str, *, param: str | None = None, code: str | None = None,
                   type: str | None = None) -> dict[str, Any]:
    """The error body in the shape of the route's own API: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    if path.startswith(ANTHROPIC_PREFIX):
        return anthropic_error_body(status, message)
    return error_body(status, message, param=param, code=code, type=type)


def error_response(exc: APIError, path: str = "") -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status in (429, 503):
        headers = {"Retry-After": "1"}  # overload and restarts pass within seconds
    body = error_body_for(path, exc.status, exc.message, param=exc.param, code=exc.code, type=exc.type)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def from_swift_error(exc: SwiftError) -> APIError:
    from swiftcli.server.failures import to_api_error

    return to_api_error(exc)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    # A validator's own message comes as "Value error, <message>": the prefix is pydantic's, not ours.
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{param}: {message}" if param else message), param


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(SwiftError)
    async def swift_error(request: Request, exc: SwiftError) -> JSONResponse:
        return error_response(from_swift_error(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(APIError(400, message, param=param), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(APIError(exc.status_code, str(exc.detail)), request.url.path)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the server log only: bodies never leak internals.
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, "internal server error", type="server_error"), request.url.path)
