"""Rendering portal pages: every page gets the navigation and marks its own section."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse


@dataclass(frozen=True)
class NavItem:
    section: str
    label: str
    url: str


NAVIGATION = [
    ("tags", "Tag explorer", "portal:tags"),
    ("segments", "Segments", "portal:segments"),
    ("campaigns", "Campaigns", "portal:campaigns"),
    ("journeys", "Journeys", "portal:journeys"),
    ("keys", "API keys", "portal:api_keys"),
    ("settings", "Settings", "portal:settings"),
    ("data_use", "How your data is used", "portal:data_use"),
]


def nav_items() -> list[NavItem]:
    return [NavItem(section, label, reverse(name)) for section, label, name in NAVIGATION]


def page(
    request: HttpRequest, template: str, context: dict | None = None, *, section: str, status: int = 200
) -> HttpResponse:
    return render(
        request,
        template,
        {"section": section, "nav_items": nav_items(), **(context or {})},
        status=status,
    )
