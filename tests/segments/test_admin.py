"""The segment admin: read mostly. Segments are made and deleted by merchants, where their use is checked."""

from __future__ import annotations

from django.contrib import admin

from segments.models import Segment


def test_the_admin_cannot_delete_a_segment_past_the_in_use_check(rf, admin_user):
    request = rf.get("/admin/segments/segment/")
    request.user = admin_user
    segment_admin = admin.site._registry[Segment]
    assert not segment_admin.has_delete_permission(request)
    assert not segment_admin.has_add_permission(request)
