"""Recommendation endpoints under /api/v1/."""

from django.urls import path

from .api import RecommendationsAPI, SimilarProductsAPI

urlpatterns = [
    path("recommendations/<str:pseudonym>", RecommendationsAPI.as_view(), name="recommendations-for-consumer"),
    path("products/<path:sku>/similar", SimilarProductsAPI.as_view(), name="products-similar"),
]
