"""Operator ingestion endpoints; filled by the ingestion work."""

urlpatterns: list = []
