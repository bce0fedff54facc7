from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from rendering.ops import metrics_view
from templates_studio.urls import catalog_urlpatterns, studio_urlpatterns
from workstation.health import HealthView
from workstation.spa import studio_app

handler400 = "workstation.api.errors.json_400"
handler403 = "workstation.api.errors.json_403"
handler404 = "workstation.api.errors.json_404"
handler500 = "workstation.api.errors.json_500"

api_v1: list[URLPattern | URLResolver] = [
    path("health", HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("workstation.accounts.urls")),
    path("", include("rendering.urls")),
    path("", include("avatars.urls")),
    path("", include(catalog_urlpatterns)),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/studio/", include(studio_urlpatterns)),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("studio/", studio_app, name="studio"),
    re_path(r"^studio/(?P<path>.*)$", studio_app),
]
