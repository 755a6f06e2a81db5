"""Serving endpoints: recommendations for a consumer (operator keys), similar products (merchant keys)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from consumers.models import Product
from consumers.subject_data import consumer_id_for_pseudonym
from merchants.api_base import MerchantAPIView, OperatorAPIView, get_scoped_or_404
from merchants.models import Merchant
from privacy.pseudonyms import is_pseudonym

from .selectors import personalisation_allowed, recommendations_with, serving, similar_products_with

MAX_N = 100
DEFAULT_N = 10


class CountQuery(serializers.Serializer):
    n = serializers.IntegerField(min_value=1, max_value=MAX_N, default=DEFAULT_N)


class RecommendationQuery(CountQuery):
    merchant = serializers.SlugField(max_length=64, help_text="The merchant whose catalogue to recommend from.")


class RecommendedProduct(serializers.Serializer):
    rank = serializers.IntegerField()
    sku = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    brand = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    # A field named like Field.source: DRF's metaclass moves declared fields off the class, which the stub cannot see.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["model", "interest", "popular"],
        help_text="model: the recommender; interest: popular in the consumer's strongest interest category "
        "(for similar products: the product's category); popular: the merchant's most popular products.",
    )


class ModelSummary(serializers.Serializer):
    id = serializers.IntegerField()
    algorithm = serializers.CharField()


class RecommendationsResponse(serializers.Serializer):
    merchant = serializers.CharField()
    consumer_known = serializers.BooleanField()
    personalised = serializers.BooleanField(
        help_text="False when no approved recommendation activity allows using consumers' data: the results are "
        "then the merchant's most popular products for everyone."
    )
    model = ModelSummary(allow_null=True)
    results = RecommendedProduct(many=True)


class SimilarProductsResponse(serializers.Serializer):
    sku = serializers.CharField()
    model = ModelSummary(allow_null=True)
    results = RecommendedProduct(many=True)


def _results(items: list[dict]) -> list[dict]:
    return [
        {
            "rank": rank,
            "sku": item["sku"],
            "title": item["title"],
            "category": item["category"],
            "brand": item["brand"],
            "price": item["price"],
            "source": item["source"],
        }
        for rank, item in enumerate(items, start=1)
    ]


def _consumer_id(pseudonym: str) -> int | None:
    """The consumer behind a pseudonym; None for one nobody holds, or one that cannot be a pseudonym at all
    (not 64 lower-case hex characters: never queried, so a NUL or an over-long value cannot reach the database)."""
    return consumer_id_for_pseudonym(pseudonym) if is_pseudonym(pseudonym) else None


def _model_summary(record) -> dict | None:
    return None if record is None else {"id": record.pk, "algorithm": record.algorithm}


class RecommendationsAPI(OperatorAPIView):
    @extend_schema(
        operation_id="recommendations_for_consumer",
        summary="Top-N products of one merchant for a consumer",
        description="Ranked by the active recommender among the merchant's products, never a product the consumer "
        "already bought from that merchant. Consumers the model does not know (or an unknown pseudonym) get the "
        "merchant's most popular products in their strongest interest category, then overall. Without an approved "
        "`recommendation` processing activity no consumer's data is used and everyone gets the popular products.",
        parameters=[
            OpenApiParameter("pseudonym", OpenApiTypes.STR, OpenApiParameter.PATH, description="Consumer pseudonym."),
            OpenApiParameter("merchant", OpenApiTypes.STR, required=True, description="Merchant slug."),
            OpenApiParameter("n", OpenApiTypes.INT, description=f"How many (1-{MAX_N}, default {DEFAULT_N})."),
        ],
        responses={
            200: RecommendationsResponse,
            400: OpenApiResponse(description="Missing merchant or n out of range."),
            404: OpenApiResponse(description="No merchant with that slug."),
        },
        tags=["recommendations"],
    )
    def get(self, request, pseudonym: str):
        query = RecommendationQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        merchant = get_scoped_or_404(Merchant.objects.all(), slug=query.validated_data["merchant"])
        consumer_id = _consumer_id(pseudonym)
        known = consumer_id is not None
        personalised = personalisation_allowed()
        if not personalised:  # no approved basis: the merchant's popular products, nobody's data used
            consumer_id = None
        record, model = serving()
        items = recommendations_with(
            consumer_id=consumer_id, merchant_id=merchant.pk, n=query.validated_data["n"], model=model
        )
        return Response(
            {
                "merchant": merchant.slug,
                "consumer_known": known,
                "personalised": personalised,
                "model": _model_summary(record),
                "results": _results(items),
            }
        )


class SimilarProductsAPI(MerchantAPIView):
    """Products of your own catalogue that consumers engage with together with this one, ranked by the active
    recommender's item similarity; a product the model has not seen gets an empty list."""

    def scoped_queryset(self, merchant):
        return Product.objects.filter(merchant=merchant)

    @extend_schema(
        operation_id="products_similar",
        summary="Products of your catalogue similar to one of yours",
        parameters=[
            OpenApiParameter("sku", OpenApiTypes.STR, OpenApiParameter.PATH, description="Your product's SKU."),
            OpenApiParameter("n", OpenApiTypes.INT, description=f"How many (1-{MAX_N}, default {DEFAULT_N})."),
        ],
        responses={
            200: SimilarProductsResponse,
            400: OpenApiResponse(description="n out of range."),
            404: OpenApiResponse(description="No product with that SKU in your catalogue."),
        },
        tags=["recommendations"],
    )
    def get(self, request, sku: str):
        query = CountQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        if len(sku) > 64 or "\x00" in sku:  # cannot be a SKU (and PostgreSQL refuses NUL in text)
            raise Http404
        product = get_scoped_or_404(self.get_queryset(), sku=sku)
        record, model = serving()
        items = similar_products_with(
            merchant_id=self.merchant.pk,
            product_id=product.pk,
            category=product.category,
            n=query.validated_data["n"],
            model=model,
        )
        return Response({"sku": product.sku, "model": _model_summary(record), "results": _results(items)})
