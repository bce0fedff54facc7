"""Plain application errors raised by services, selectors and tasks (no DRF here).

The API layer maps each one to the documented error format (workstation/api/errors.py);
a Celery worker that meets one records it on the job. The HTTP status sits next to each class
only as the API's mapping table, so the meaning of an error stays in one place.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """Base of every error a service raises on purpose. `code` is stable for clients."""

    http_status = 400
    code = "invalid"
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(ApplicationError):
    """Input that breaks a rule, naming every offending field.

    `details` optionally carries machine-readable items (e.g. one per rejected photo with a
    stable `code`), returned as `error.details`.
    """

    default_message = "The request has invalid fields."

    def __init__(
        self,
        fields: dict[str, list[str]] | str,
        *,
        message: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        # A message about the request as a whole has no field to name.
        if isinstance(fields, str):
            fields = {"non_field_errors": [fields]}
        general = fields.get("non_field_errors") if list(fields) == ["non_field_errors"] else None
        self.fields: dict[str, Any] = {} if general else fields
        super().__init__(message or (" ".join(map(str, general)) if general else None))
        self.details = details


class NotFoundError(ApplicationError):
    http_status = 404
    code = "not_found"
    default_message = "Not found."


class PermissionDeniedError(ApplicationError):
    http_status = 403
    code = "permission_denied"
    default_message = "You may not do this."


class ConflictError(ApplicationError):
    """The request conflicts with the current state (a finished job, a used key...)."""

    http_status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class InsufficientCredits(ApplicationError):
    http_status = 402
    code = "insufficient_credits"
    default_message = "Not enough credits."


class ServiceUnavailable(ApplicationError):
    http_status = 503
    code = "service_unavailable"
    default_message = "A backing service is unavailable. Try again shortly."


class TooManyAttempts(ApplicationError):
    """Too many failed sign-ins for one account: refused, whatever the password, until
    `retry_after_s` has passed (the password is not even checked meanwhile)."""

    http_status = 429
    code = "account_locked"
    default_message = "Too many failed sign-ins for this account. Try again later."

    def __init__(self, *, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            f"Too many failed sign-ins for this account. Try again in {retry_after_s} seconds."
        )
