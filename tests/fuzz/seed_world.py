"""A small world for the fuzzer, so the ids it tries exist: run with `python manage.py shell -c`.

demo_setup builds merchants, an approved register, a marketplace, tags, segments, a recommender and a finished
campaign; this adds a draft campaign, a data-subject request and one key of each kind, and prints the keys as
JSON on the last line.
"""

from __future__ import annotations

import io
import json

from django.core.management import call_command


def seed() -> None:
    from campaigns.models import Campaign
    from campaigns.services import campaign_create
    from merchants.models import ApiKeyKind, Merchant
    from merchants.services import api_key_issue
    from privacy.subject_rights import subject_request_submit

    call_command("demo_setup", consumers=2000, products=150, events=20000, seed=3, replay=1, stdout=io.StringIO())
    finished = Campaign.objects.order_by("pk").first()
    merchant = finished.merchant if finished else Merchant.objects.order_by("pk").first()
    segment_ids = [s.pk for s in finished.include_segments.all()] if finished else []
    if segment_ids:
        campaign_create(
            merchant=merchant,
            actor="fuzz",
            name="Fuzz draft",
            title_template="Hello from {store_name}",
            body_template="Something new.",
            include_segment_ids=segment_ids,
        )
    subject_request_submit(kind="access", raw_identifier="fuzz-subject@example.com", actor="fuzz")
    keys = {
        "merchant": api_key_issue(kind=ApiKeyKind.MERCHANT, name="fuzz", merchant=merchant).raw_key,
        "operator": api_key_issue(kind=ApiKeyKind.OPERATOR, name="fuzz").raw_key,
    }
    print(json.dumps(keys))
