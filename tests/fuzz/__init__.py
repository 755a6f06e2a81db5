"""Schemathesis over the OpenAPI document against a live server (a CI stage of its own, not part of the suite)."""
