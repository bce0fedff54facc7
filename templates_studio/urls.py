from django.urls import path

from . import api

studio_urlpatterns = [
    path("spec-schema", api.SpecSchemaView.as_view(), name="studio-spec-schema"),
    path("templates", api.TemplateListCreateView.as_view(), name="studio-templates"),
    path("templates/<uuid:pk>", api.TemplateDetailView.as_view(), name="studio-template"),
    path(
        "templates/<uuid:pk>/revisions",
        api.RevisionListCreateView.as_view(),
        name="studio-revisions",
    ),
    path(
        "templates/<uuid:pk>/revisions/<int:number>",
        api.RevisionDetailView.as_view(),
        name="studio-revision",
    ),
    path(
        "templates/<uuid:pk>/revisions/<int:number>/previews",
        api.PreviewCreateView.as_view(),
        name="studio-preview-create",
    ),
    path(
        "templates/<uuid:pk>/revisions/<int:number>/submit",
        api.SubmitView.as_view(),
        name="studio-submit",
    ),
    path("templates/<uuid:pk>/compare", api.CompareView.as_view(), name="studio-compare"),
    path(
        "templates/<uuid:pk>/unpublish",
        api.TemplateTransitionView.as_view(transition="unpublish"),
        name="studio-unpublish",
    ),
    path(
        "templates/<uuid:pk>/retire",
        api.TemplateTransitionView.as_view(transition="retire"),
        name="studio-retire",
    ),
    path(
        "templates/<uuid:template>/events",
        api.EventFeedView.as_view(),
        name="studio-template-events",
    ),
    path("templates/<uuid:pk>/stats", api.StatsView.as_view(), name="studio-stats"),
    path("previews/<uuid:preview_id>", api.PreviewDetailView.as_view(), name="studio-preview"),
    path(
        "previews/<uuid:preview_id>/contact-sheet",
        api.ContactSheetView.as_view(),
        name="studio-contact-sheet",
    ),
    path("cells/<int:cell_id>/image", api.CellImageView.as_view(), name="studio-cell-image"),
    path("reviews", api.ReviewQueueView.as_view(), name="studio-reviews"),
    path("reviews/<int:pk>", api.ReviewDetailView.as_view(), name="studio-review"),
    path(
        "reviews/<int:review_id>/approve",
        api.ReviewDecisionView.as_view(decision="approve"),
        name="studio-review-approve",
    ),
    path(
        "reviews/<int:review_id>/request-changes",
        api.ReviewDecisionView.as_view(decision="request-changes"),
        name="studio-review-request-changes",
    ),
    path("catalog/order", api.CatalogOrderView.as_view(), name="studio-catalog-order"),
    path("events", api.EventFeedView.as_view(), name="studio-events"),
    path("assets", api.AssetListCreateView.as_view(), name="studio-assets"),
    path("assets/pose", api.PoseAssetView.as_view(), name="studio-pose-asset"),
    path("assets/<str:sha256>/image", api.AssetImageView.as_view(), name="studio-asset-image"),
    path("test-avatars", api.PanelView.as_view(), name="studio-panel"),
]

# Mounted under /api/studio/ (the catalog, under /api/v1/, is catalog_urls.py).
urlpatterns = studio_urlpatterns
