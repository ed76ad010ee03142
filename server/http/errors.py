"""The HTTP error tree and the handlers that turn it (and Litestar's own) into JSON.

Every error body is ``{"status", "error", "field"?, "reason"?}``. Three cases
matter to clients:

- 401: no bearer token, or one that matches nobody;
- 404: anything the caller may not see, worded exactly like a missing thing,
  so a response never reveals that a hidden person or team exists;
- 422: a bad parameter, naming the field and the reason;
- 503: a view that took longer than its time budget (it is still computed in the
  background; retry after the ``Retry-After`` seconds).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import (
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

log = logging.getLogger(__name__)


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """What every error response carries."""

    status: int
    error: str
    field: str | None = None
    reason: str | None = None


class ApiError(Exception):
    """Base of the API's own errors: a status and a short message."""

    status = HTTP_500_INTERNAL_SERVER_ERROR
    message = "internal error"

    def body(self) -> ErrorBody:
        """The JSON body for this error."""
        return ErrorBody(self.status, self.message)

    def headers(self) -> dict[str, str] | None:
        """Extra response headers for this error."""
        return None


class Unauthorized(ApiError):
    """No token, or a token that matches nobody."""

    status = HTTP_401_UNAUTHORIZED

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str] | None:
        """Where to authenticate."""
        return {"WWW-Authenticate": 'Bearer realm="milepost"'}


class NotVisible(ApiError):
    """Missing, or hidden from the caller: the two are indistinguishable on purpose."""

    status = HTTP_404_NOT_FOUND
    message = "not found"


class InvalidParameter(ApiError):
    """A parameter that cannot be used, with the field and the reason."""

    status = HTTP_422_UNPROCESSABLE_ENTITY
    message = "invalid parameter"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def body(self) -> ErrorBody:
        """The JSON body, naming the field and the reason."""
        return ErrorBody(self.status, self.message, self.field, self.reason)


class ViewTooSlow(ApiError):
    """A view that did not finish within its time budget; it goes on in the background."""

    status = HTTP_503_SERVICE_UNAVAILABLE
    message = "view not ready"

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.reason = (
            f"the view took longer than its budget of {budget:g} s; it is still being"
            " computed, retry shortly"
        )
        super().__init__(self.reason)

    def body(self) -> ErrorBody:
        """The JSON body, with the reason."""
        return ErrorBody(self.status, self.message, reason=self.reason)

    def headers(self) -> dict[str, str] | None:
        """When to come back: about one budget later."""
        return {"Retry-After": str(max(1, round(self.budget)))}


def _json(body: ErrorBody, headers: dict[str, str] | None = None) -> Response[ErrorBody]:
    return Response(body, status_code=body.status, headers=headers, media_type="application/json")


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return _json(exc.body(), exc.headers())


PUBLIC_NAMES = {"start": "from", "end": "to", "last_event_id": "Last-Event-ID"}
"""Handler argument names whose public (query or header) name differs."""


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    """Litestar's parameter parsing errors: 422 with the first field and its reason."""
    field, reason = "request", str(exc.detail)
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first = extra[0]
        field = str(first.get("key") or field)
        field = PUBLIC_NAMES.get(field, field)
        reason = str(first.get("message") or reason)
    return _json(ErrorBody(HTTP_422_UNPROCESSABLE_ENTITY, "invalid parameter", field, reason))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, NotFoundException):
        return _json(ErrorBody(HTTP_404_NOT_FOUND, "not found"))
    status = exc.status_code
    message = "internal error" if status >= 500 else str(exc.detail)
    return _json(ErrorBody(status, message), dict(exc.headers or {}))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(ErrorBody(HTTP_500_INTERNAL_SERVER_ERROR, "internal error"))


ERROR_RESPONSES: dict[int, ResponseSpec] = {
    HTTP_401_UNAUTHORIZED: ResponseSpec(ErrorBody, description="No valid bearer token."),
    HTTP_404_NOT_FOUND: ResponseSpec(ErrorBody, description="Missing, or not visible to you."),
    HTTP_422_UNPROCESSABLE_ENTITY: ResponseSpec(
        ErrorBody, description="A bad parameter: the field and the reason."
    ),
    HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
        ErrorBody, description="The view took longer than its time budget; retry shortly."
    ),
}
"""The error responses every data route documents in the OpenAPI schema."""

EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
