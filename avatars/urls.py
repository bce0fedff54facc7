from django.urls import path

from . import api

urlpatterns = [
    path("consent/current", api.ConsentCurrentView.as_view(), name="consent-current"),
    path("consents", api.ConsentListCreateView.as_view(), name="consent-list"),
    path("consents/<uuid:pk>/withdraw", api.ConsentWithdrawView.as_view(), name="consent-withdraw"),
    path("avatars", api.AvatarListCreateView.as_view(), name="avatar-list"),
    path("avatars/<uuid:pk>", api.AvatarDetailView.as_view(), name="avatar-detail"),
    path("avatars/<uuid:pk>/events", api.AvatarEventsView.as_view(), name="avatar-events"),
    path("me/export", api.ExportView.as_view(), name="me-export"),
    path("me/erase", api.EraseView.as_view(), name="me-erase"),
    path("ops/test-avatars", api.TestAvatarListCreateView.as_view(), name="test-avatar-list"),
    path(
        "ops/test-avatars/<uuid:pk>", api.TestAvatarDetailView.as_view(), name="test-avatar-detail"
    ),
]
