"""Request ids: every response and error body carries one, so a user's report finds its logs."""

from __future__ import annotations

import re
import uuid

_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    header = "X-Request-ID"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(self.header, "")
        request.request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        response = self.get_response(request)
        response[self.header] = request.request_id
        return response


# The studio app loads only its own hashed bundles and talks only to this origin; images are
# served by our API (or blob:/data: URLs made from them). Nothing inline, nothing framed.
STUDIO_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class StudioContentSecurityPolicyMiddleware:
    """Content-Security-Policy on the studio's pages (/studio/...)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/studio/") or request.path == "/studio":
            response.setdefault("Content-Security-Policy", STUDIO_CSP)
        return response
