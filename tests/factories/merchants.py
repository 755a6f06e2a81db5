"""Merchants, their members and API keys, made through merchants.services."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from merchants.models import ApiKey, ApiKeyKind, Membership, Merchant, Role
from merchants.services import api_key_issue, membership_grant, merchant_create


class MerchantFactory(factory.django.DjangoModelFactory):
    """A merchant, validated and saved by `merchant_create`."""

    class Meta:
        model = Merchant

    slug = factory.Sequence(lambda n: f"merchant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return merchant_create(**kwargs)


class UserFactory(factory.django.DjangoModelFactory):
    """A portal or admin user; the password is `<username>-pass-123` unless given."""

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user-{n}")
    password = factory.LazyAttribute(lambda o: f"{o.username}-pass-123")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return model_class.objects.create_user(**kwargs)


class OfficerFactory(UserFactory):
    """A privacy officer: staff, in the "Privacy officers" group the migrations create."""

    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"officer-{n}")
    is_staff = True

    @factory.post_generation
    def officer_group(self, create, extracted, **kwargs):
        if create:
            self.groups.add(Group.objects.get(name="Privacy officers"))


class MembershipFactory(factory.django.DjangoModelFactory):
    """A user's membership of a merchant, granted by `membership_grant`."""

    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    merchant = factory.SubFactory(MerchantFactory)
    role = Role.ANALYST

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return membership_grant(**kwargs)


def member_create(*, merchant: Merchant, role: str = Role.ANALYST, **user_fields):
    """A user who is a member of `merchant` with `role`; returns the user."""
    return MembershipFactory(merchant=merchant, role=role, **{f"user__{k}": v for k, v in user_fields.items()}).user


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """An API key issued by `api_key_issue`. Returns the IssuedKey: `.raw_key` (shown once) and `.api_key`."""

    class Meta:
        model = ApiKey

    kind = ApiKeyKind.MERCHANT
    name = "test"
    merchant = factory.Maybe(
        factory.LazyAttribute(lambda o: o.kind == ApiKeyKind.MERCHANT),
        yes_declaration=factory.SubFactory(MerchantFactory),
        no_declaration=None,
    )
    created_by = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return api_key_issue(**kwargs)


__all__ = [
    "ApiKeyFactory",
    "MembershipFactory",
    "MerchantFactory",
    "OfficerFactory",
    "UserFactory",
    "member_create",
]
