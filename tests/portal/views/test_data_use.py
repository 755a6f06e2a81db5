def test_lists_only_approved_activities_with_their_basis(portal_client, approve_activity):
    from privacy.models import LegalBasis, ProcessingActivity, Purpose

    approve_activity("recommendation")
    ProcessingActivity.objects.create(
        name="Unapproved idea", purpose=Purpose.TAGGING, legal_basis=LegalBasis.CONSENT, description="draft"
    )
    page = portal_client.get("/how-your-data-is-used/").content.decode()
    assert "recommendation activity" in page
    assert "Business Improvement Exception" in page
    assert "Unapproved idea" not in page
    assert "Direct marketing" in page  # listed under "Not in force"


def test_empty_register_says_nothing_runs(portal_client):
    page = portal_client.get("/how-your-data-is-used/").content.decode()
    assert "No approved processing activities" in page
