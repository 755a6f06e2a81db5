"""The store's settings page: quiet hours set and cleared by owners and marketers, read by analysts, in the
merchant's own time zone; time zone and currency shown."""

from datetime import time

from django.contrib.admin.sites import site

from merchants.models import Merchant


def test_a_marketer_sets_and_clears_the_quiet_hours(portal_client, merchant):
    page = portal_client.get("/settings/").content.decode()
    assert 'href="/settings/"' in page and merchant.time_zone in page and merchant.currency in page
    response = portal_client.post("/settings/", {"quiet_start": "22:00", "quiet_end": "07:30"}, follow=True)
    assert "Quiet hours saved: 22:00 to 07:30" in response.content.decode()
    merchant.refresh_from_db()
    assert (merchant.quiet_start, merchant.quiet_end) == (time(22), time(7, 30))
    portal_client.post("/settings/", {"quiet_start": "", "quiet_end": ""})
    merchant.refresh_from_db()
    assert merchant.quiet_hours is None


def test_half_a_window_or_an_empty_one_is_refused_next_to_the_field(portal_client, merchant):
    response = portal_client.post("/settings/", {"quiet_start": "22:00", "quiet_end": ""})
    assert response.status_code == 400
    assert "Give both the start and the end" in response.content.decode()
    assert 'id="id_quiet_end_error"' in response.content.decode()
    response = portal_client.post("/settings/", {"quiet_start": "9:00", "quiet_end": "09:00"})
    assert response.status_code == 400 and "same time" in response.content.decode()
    response = portal_client.post("/settings/", {"quiet_start": "late", "quiet_end": "08:00"})
    assert response.status_code == 400 and "Write a time of day" in response.content.decode()
    merchant.refresh_from_db()
    assert merchant.quiet_hours is None


def test_an_analyst_reads_the_settings_but_cannot_change_them(analyst_client, merchant):
    Merchant.objects.filter(pk=merchant.pk).update(quiet_start=time(21, 30), quiet_end=time(8))
    page = analyst_client.get("/settings/").content.decode()
    assert "Quiet from 21:30 until 08:00" in page and '<form method="post" novalidate' not in page
    assert analyst_client.post("/settings/", {"quiet_start": "", "quiet_end": ""}).status_code == 403
    merchant.refresh_from_db()
    assert merchant.quiet_start == time(21, 30)


def test_the_admin_edits_a_merchants_quiet_hours(admin_client, merchant):
    assert Merchant in site._registry
    url = f"/admin/merchants/merchant/{merchant.pk}/change/"
    form = {
        "slug": merchant.slug,
        "name": merchant.name,
        "time_zone": "Europe/Paris",
        "currency": merchant.currency,
        "quiet_start": "22:00",
        "quiet_end": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "Give both the start and the end" in response.content.decode()
    response = admin_client.post(url, {**form, "quiet_end": "07:00"})
    assert response.status_code == 302
    merchant.refresh_from_db()
    assert merchant.quiet_hours is not None and merchant.quiet_hours.describe() == "22:00-07:00 (Europe/Paris)"
