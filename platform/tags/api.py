"""The tag catalogue for merchants: GET /api/v1/tags/.

The catalogue is the same for every merchant (tags describe the marketplace's
consumers, not a merchant's data); reach is released through the privacy layer
(tags.reach.released_reach), the same number on every page.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from merchants.api_base import MerchantAPIView
from merchants.api_fields import ChoiceField

from .models import Tag
from .reach import released_reach
from .rules import known_families, tag_visible_to
from .selectors import tag_families, tags_catalogue


class ReachOutput(serializers.Serializer):
    size = serializers.IntegerField(allow_null=True, help_text="The released (noisy, rounded) reach; null if hidden.")
    display = serializers.CharField(help_text='e.g. "12,000" or "fewer than 500".')
    hidden = serializers.BooleanField(help_text="True when the released reach is under the suppression threshold.")
    error_bound = serializers.IntegerField(allow_null=True, help_text="95 % bound on |size - true reach|.")
    precision = serializers.CharField()
    withheld = serializers.BooleanField(help_text="True when not released: the privacy budget is spent.")


class TagOutput(serializers.Serializer):
    tag = serializers.CharField(help_text="family:value, as written in segment expressions.")
    value = serializers.CharField()
    label = serializers.CharField()
    definition = serializers.CharField()
    reach = ReachOutput()


class FamilyOutput(serializers.Serializer):
    family = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
    rule_version = serializers.CharField()
    tags = TagOutput(many=True)


class TagCatalogueOutput(serializers.Serializer):
    families = FamilyOutput(many=True)


class TagListQuery(serializers.Serializer):
    # Choices are filled per instance from known_families(), the one list of accepted families (the rules' and
    # those higher layers register at start-up, e.g. predicted traits): the OpenAPI enum is generated from an
    # instance too, so the schema and the validation cannot disagree.
    family = ChoiceField(choices=(), required=False, help_text="Only this family.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["family"].choices = list(known_families())


class TagListApi(MerchantAPIView):
    """Every tag a segment can name, grouped by family, with its definition and its reach: how many live consumers
    carry it, released with privacy noise (the same figure every time it is asked in the period)."""

    def scoped_queryset(self, merchant):
        return Tag.objects.all()  # the catalogue is platform-wide: every merchant sees the same tags

    @extend_schema(
        summary="The tag catalogue with each tag's reach",
        parameters=[TagListQuery],
        responses=TagCatalogueOutput,
    )
    def get(self, request):
        query = TagListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data.get("family")
        by_family: dict[str, list[dict]] = {}
        tags = [
            tag
            for tag in tags_catalogue(family=wanted)
            if tag_visible_to(family=tag.family, value=tag.value, merchant_slug=self.merchant.slug)
        ]
        reaches = released_reach(merchant_id=self.merchant.pk, tags=tags)
        for tag, reach in zip(tags, reaches, strict=True):
            by_family.setdefault(tag.family, []).append(
                {
                    "tag": tag.code,
                    "value": tag.value,
                    "label": tag.label,
                    "definition": tag.definition,
                    "reach": reach.public(),
                }
            )
        families = [
            {
                "family": family.family,
                "label": family.label,
                "description": family.description,
                "rule_version": family.rule_version,
                "tags": by_family.get(family.family, []),
            }
            for family in tag_families()
            if wanted is None or family.family == wanted
        ]
        return Response(TagCatalogueOutput({"families": families}).data)
