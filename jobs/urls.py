from django.urls import path

from . import api, ops

urlpatterns = [
    path("ops/test-render", api.TestRenderListCreateView.as_view(), name="test-render-list"),
    path(
        "ops/test-render/<uuid:pk>", api.TestRenderDetailView.as_view(), name="test-render-detail"
    ),
    path(
        "ops/test-render/<uuid:pk>/outputs/<int:index>",
        api.TestRenderOutputView.as_view(),
        name="test-render-output",
    ),
    path("ops/queue", ops.QueueDashboardView.as_view(), name="ops-queue"),
]
