from django.urls import include, path

from . import api, consumer_api, ops

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
    path("generations", consumer_api.GenerationListCreateView.as_view(), name="generation-list"),
    path(
        "generations/<uuid:pk>",
        consumer_api.GenerationDetailView.as_view(),
        name="generation-detail",
    ),
    path(
        "generations/<uuid:pk>/cancel",
        consumer_api.GenerationCancelView.as_view(),
        name="generation-cancel",
    ),
    path(
        "generations/<uuid:pk>/refine",
        consumer_api.GenerationRefineView.as_view(),
        name="generation-refine",
    ),
    path(
        "generations/<uuid:pk>/events",
        consumer_api.GenerationEventsView.as_view(),
        name="generation-events",
    ),
    path("files/<str:token>", consumer_api.FileDownloadView.as_view(), name="file-download"),
    path("credits", consumer_api.CreditsView.as_view(), name="credits"),
    path("credits/grants", consumer_api.GrantView.as_view(), name="credit-grants"),
    path("", include("rendering.webhook_api")),
]
