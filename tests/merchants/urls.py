"""URLs for the merchant-access tests: the real API plus two small merchant-scoped views."""

from django.urls import include, path
from rest_framework import mixins, serializers
from rest_framework.routers import SimpleRouter

from consumers.models import Product
from merchants.api_base import MerchantScopedViewSet


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "sku", "title"]


class ProductViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, MerchantScopedViewSet):
    serializer_class = ProductSerializer

    def scoped_queryset(self, merchant):
        return Product.objects.filter(merchant=merchant).order_by("sku")


class ForgetfulViewSet(mixins.ListModelMixin, MerchantScopedViewSet):
    """Forgot to define scoped_queryset: must fail closed, never list everything."""

    serializer_class = ProductSerializer


router = SimpleRouter(trailing_slash=False)
router.register("test-products", ProductViewSet, basename="test-products")
router.register("test-forgetful", ForgetfulViewSet, basename="test-forgetful")

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("api/v1/", include("consumers.api_urls")),
]
