"""The Swagger UI page (GET /api/v1/docs/)."""

from __future__ import annotations

from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.renderers import BaseRenderer, JSONRenderer


class ApiDocsView(SpectacularSwaggerView):
    """The API's interactive documentation (Swagger UI)."""

    # OPTIONS answers JSON: drf-spectacular's only renderer is the HTML page's template, which
    # cannot render the OPTIONS metadata (that answered 500).
    def get_renderers(self) -> list[BaseRenderer]:
        if self.request.method == "OPTIONS":
            return [JSONRenderer()]
        return super().get_renderers()
