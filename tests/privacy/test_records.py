import csv
import io
import json

import pytest
from django.core.management import call_command

from privacy.models import AuditEntry, ProcessingActivity, Purpose
from privacy.records import RECORD_FIELDS


@pytest.fixture
def register(approve_activity):
    approve_activity(
        Purpose.TAGGING,
        data_categories="behaviour events, age range, country",
        recipients="merchants (aggregates only)",
        retention="events 400 days; tags until recomputed",
        safeguards="pseudonymised at ingestion; audiences under 100 hidden",
    )
    approve_activity(Purpose.RISK_CONTROL, data_categories="device fingerprint (pseudonymised), orders")
    ProcessingActivity.objects.create(
        name="draft recs", purpose=Purpose.RECOMMENDATION, legal_basis="consent", description="later"
    )


def export(*args) -> str:
    out = io.StringIO()
    call_command("processing_record", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_csv_record_lists_every_activity_with_its_basis_and_safeguards(register, officer):
    rows = list(csv.DictReader(io.StringIO(export("--format", "csv"))))
    assert list(rows[0]) == RECORD_FIELDS
    assert [r["purpose"] for r in rows] == ["recommendation", "risk_control", "tagging"]
    tagging = rows[2]
    assert tagging["legal_basis_label"] == "Business Improvement Exception"
    assert tagging["data_categories"] == "behaviour events; age range; country"
    assert tagging["retention"] == "events 400 days; tags until recomputed"
    assert tagging["status"] == "approved"
    assert tagging["approved_by"] == officer.username
    risk = rows[1]
    assert risk["disclosure_url"] == "https://marketplace.example/privacy/legitimate-interests"
    assert risk["counter_statement_channel"].startswith("In-app form")
    assert "Balancing test" in risk["assessment"]
    assert rows[0]["status"] == "draft"


def test_json_record_and_the_approved_only_filter(register):
    document = json.loads(export("--format", "json", "--approved-only"))
    assert [a["purpose"] for a in document["activities"]] == ["risk_control", "tagging"]
    assert document["approved_activities"] == 2
    assert document["activities"][1]["data_categories"] == ["behaviour events", "age range", "country"]
    assert document["event_retention_days"] == 400
    assert AuditEntry.objects.filter(action="processing_record.exported", details__format="json").exists()


def test_record_written_to_a_file(register, tmp_path):
    target = tmp_path / "record.json"
    export("--format", "json", "--output", str(target))
    assert len(json.loads(target.read_text())["activities"]) == 3


def test_officers_download_the_record_from_the_admin(register, client, officer):
    client.force_login(officer)
    page = client.get("/admin/privacy/processingactivity/").content.decode()
    assert "record/?format=csv" in page
    response = client.get("/admin/privacy/processingactivity/record/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert len(list(csv.DictReader(io.StringIO(response.content.decode())))) == 3
    as_json = client.get("/admin/privacy/processingactivity/record/?format=json")
    assert len(json.loads(as_json.content)["activities"]) == 3

    ids = ProcessingActivity.objects.filter(purpose=Purpose.TAGGING).values_list("pk", flat=True)
    selected = client.post(
        "/admin/privacy/processingactivity/",
        {"action": "export_record_json", "_selected_action": [str(i) for i in ids]},
    )
    assert [a["purpose"] for a in json.loads(selected.content)["activities"]] == ["tagging"]
    assert AuditEntry.objects.filter(action="processing_record.exported", actor=f"user:{officer.pk}").count() == 3


def test_the_record_view_needs_an_admin_login(register, client):
    response = client.get("/admin/privacy/processingactivity/record/?format=csv")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
