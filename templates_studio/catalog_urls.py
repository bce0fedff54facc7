"""The consumer catalog, mounted under /api/v1/."""

from django.urls import path

from . import api

urlpatterns = [
    path("catalog/templates", api.CatalogListView.as_view(), name="catalog-list"),
    path("catalog/templates/<uuid:pk>", api.CatalogDetailView.as_view(), name="catalog-detail"),
    path("catalog/templates/<uuid:pk>/cover", api.CatalogCoverView.as_view(), name="catalog-cover"),
]
