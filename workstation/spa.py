"""Serves the built frontend's index.html for every URL under /studio/ (client-side routes)."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET


@lru_cache(maxsize=1)
def _index_html(mtime: float) -> str:
    return (settings.FRONTEND_DIST / "index.html").read_text()


@require_GET
@ensure_csrf_cookie
def studio_app(request, path: str = ""):
    index = settings.FRONTEND_DIST / "index.html"
    if not index.exists():
        return HttpResponse(
            "The studio frontend is not built. Run `make frontend` (or `make run`).",
            status=503,
            content_type="text/plain",
        )
    response = HttpResponse(_index_html(index.stat().st_mtime))
    response["Cache-Control"] = "no-cache"
    return response
