"""One error format for every API error.

    {"error": {"status": 400, "code": "invalid", "message": "...",
               "fields": {"steps": ["Ensure this value is less than or equal to 150."]},
               "request_id": "..."}}

`fields` appears only on validation errors; nested fields are dotted (`controls.0.scale`).
Services raise the plain errors of `workstation.errors`; `api_exception_handler` maps them
here. Views never build error bodies by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    PermissionDenied as DjangoPermissionDenied,
)
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from workstation.errors import ApplicationError, InvalidInput, ServiceUnavailable

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = (
        "The request body is larger than this endpoint accepts "
        "(DATA_UPLOAD_MAX_MEMORY_SIZE for fields, per-file limits for uploads)."
    )


_CODES = {
    400: "invalid",
    401: "not_authenticated",
    402: "insufficient_credits",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "service_unavailable",
}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            if item:
                out.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def error_body(
    *,
    status_code: int,
    message: str,
    code: str | None = None,
    fields: dict[str, list[str]] | None = None,
    request: HttpRequest | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "status": status_code,
        "code": code or _CODES.get(status_code, "error"),
        "message": message,
    }
    if fields:
        error["fields"] = fields
    if details:
        error["details"] = details
    request_id = getattr(request, "request_id", None)
    if request_id:
        error["request_id"] = request_id
    return {"error": error}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: rest_framework.views imports the authentication classes, which import
    # services that raise these errors.
    from rest_framework.views import exception_handler as drf_exception_handler

    request = context.get("request")
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exc).__name__)
        exc = ServiceUnavailable("The database is unavailable. Try again shortly.")
    if isinstance(exc, ApplicationError):
        return _application_error_response(exc, request)
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        exc = exceptions.APIException("An internal error occurred.")
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, (TooManyFilesSent, TooManyFieldsSent)):
        exc = exceptions.ValidationError(
            "Too many parts in this request (files or fields); send fewer."
        )
    elif isinstance(exc, SuspiciousOperation):
        logger.warning("suspicious request: %s", type(exc).__name__)
        exc = exceptions.ValidationError("The request was refused as malformed.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            error_body(status_code=500, message="An internal error occurred.", request=request),
            status=500,
        )

    fields = None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if list(fields) == ["non_field_errors"]:
            message = " ".join(fields["non_field_errors"])
            fields = None
        else:
            message = getattr(exc, "message", None) or "The request has invalid fields."
    elif isinstance(exc, exceptions.ParseError):
        message = f"Malformed request body: {exc.detail}"
    else:
        detail = getattr(exc, "detail", str(exc))
        message = str(detail if not isinstance(detail, (list, dict)) else _flatten(detail))
    code: str | None
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_request"
    else:
        code = _CODES.get(response.status_code) or getattr(exc, "default_code", None)
    response.data = error_body(
        status_code=response.status_code,
        message=message,
        code=code,
        fields=fields,
        request=request,
        details=getattr(exc, "details", None),
    )
    return response


def _application_error_response(exc: ApplicationError, request: Any) -> Response:
    fields = _flatten(exc.fields) if isinstance(exc, InvalidInput) and exc.fields else None
    details = exc.details if isinstance(exc, InvalidInput) else None
    return Response(
        error_body(
            status_code=exc.http_status,
            message=exc.message,
            code=exc.code,
            fields=fields,
            request=request,
            details=details,
        ),
        status=exc.http_status,
    )


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_404(request: HttpRequest, exception: Exception | None = None):
    if _is_api(request):
        return JsonResponse(
            error_body(status_code=404, message=f"No route for {request.path}.", request=request),
            status=404,
        )
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_500(request: HttpRequest):
    if _is_api(request):
        return JsonResponse(
            error_body(status_code=500, message="An internal error occurred.", request=request),
            status=500,
        )
    from django.views.defaults import server_error

    return server_error(request)


def json_400(request: HttpRequest, exception: Exception | None = None):
    return JsonResponse(
        error_body(status_code=400, message="Bad request.", request=request), status=400
    )


def json_403(request: HttpRequest, exception: Exception | None = None):
    return JsonResponse(
        error_body(status_code=403, message="Forbidden.", request=request), status=403
    )
