"""The root URLconf: the composition root. It names each app's URLs by module path (strings),
so the project package imports no product app."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from workstation.admin_login import throttled
from workstation.api.docs import ApiDocsView
from workstation.health import HealthView
from workstation.spa import studio_app

handler400 = "workstation.api.errors.json_400"
handler403 = "workstation.api.errors.json_403"
handler404 = "workstation.api.errors.json_404"
handler500 = "workstation.api.errors.json_500"

api_v1: list[URLPattern | URLResolver] = [
    path("health", HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    path("", include("workstation.accounts.urls")),
    path("", include("jobs.urls")),
    path("", include("credits.urls")),
    path("", include("generations.urls")),
    path("", include("avatars.urls")),
    path("", include("templates_studio.catalog_urls")),
]

admin.site.login = throttled(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/studio/", include("templates_studio.urls")),
    path("", include("jobs.metrics_urls")),
    path("admin/", admin.site.urls),
    path("studio/", studio_app, name="studio"),
    re_path(r"^studio/(?P<path>.*)$", studio_app),
]
