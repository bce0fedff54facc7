"""Django admin's sign-in, rate limited like the API's (per client address, LoginRateThrottle);
the per-account lockout applies through the authentication backend."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse

from workstation.api.throttles import LoginRateThrottle


def throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def login(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            throttle = LoginRateThrottle()
            if not throttle.allow_request(request, None):  # type: ignore[arg-type]
                wait = throttle.wait()
                response = HttpResponse(
                    "Too many sign-in attempts. Try again later.\n",
                    status=429,
                    content_type="text/plain",
                )
                if wait:
                    response["Retry-After"] = str(int(wait) + 1)
                return response
        return view(request, *args, **kwargs)

    return login
