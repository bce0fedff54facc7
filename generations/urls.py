from django.urls import include, path

from . import api as consumer_api

urlpatterns = [
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
    path("", include("generations.webhook_api")),
    path("", include("generations.usage_api")),
]
