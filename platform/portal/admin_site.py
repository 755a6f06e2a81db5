"""The administration site's look for privacy officers and operators: names, and the officer dashboard.

The dashboard panel itself is templates/admin/index.html, fed by the
`officer_summary` template tag (portal/templatetags/officer.py).
"""

from __future__ import annotations

from django.contrib import admin


def configure_admin_site(site: admin.AdminSite = admin.site) -> None:
    site.site_header = "Merchant DMP · Privacy and operations"
    site.site_title = "Merchant DMP administration"
    site.index_title = "Privacy officer’s desk"
    # Merchants' users are not staff: Django's admin refuses them at the login (has_permission checks is_staff).
    site.site_url = "/"
