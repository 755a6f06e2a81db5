import pytest
from django.core.exceptions import ValidationError

from privacy.models import AuditEntry, LegalBasis, ProcessingActivity, Purpose
from privacy.services import (
    ProcessingNotPermitted,
    activity_approve,
    activity_suspend,
    processing_basis_require,
)


def make_activity(**fields) -> ProcessingActivity:
    base = dict(name="x", description="why", purpose=Purpose.TAGGING, legal_basis=LegalBasis.BUSINESS_IMPROVEMENT)
    return ProcessingActivity.objects.create(**{**base, **fields})


@pytest.mark.parametrize(
    "basis", [LegalBasis.BUSINESS_IMPROVEMENT, LegalBasis.LEGITIMATE_INTERESTS, LegalBasis.DEEMED_CONSENT]
)
def test_direct_marketing_refuses_every_basis_but_consent(db, officer, basis):
    activity = make_activity(
        purpose=Purpose.DIRECT_MARKETING,
        legal_basis=basis,
        assessment="thorough",
        disclosure_url="https://x.example/li",
        counter_statement_channel="form",
    )
    with pytest.raises(ValidationError) as exc:
        activity_approve(activity=activity, officer=officer)
    assert "express opt-in consent" in str(exc.value.message_dict["legal_basis"])
    activity.refresh_from_db()
    assert activity.status == "draft"


def test_legitimate_interests_needs_assessment_disclosure_and_channel(db, officer):
    activity = make_activity(purpose=Purpose.RISK_CONTROL, legal_basis=LegalBasis.LEGITIMATE_INTERESTS)
    with pytest.raises(ValidationError) as exc:
        activity_approve(activity=activity, officer=officer)
    assert set(exc.value.message_dict) == {"assessment", "disclosure_url", "counter_statement_channel"}


def test_business_improvement_needs_a_written_assessment(db, officer):
    with pytest.raises(ValidationError) as exc:
        activity_approve(activity=make_activity(assessment=""), officer=officer)
    assert "assessment" in exc.value.message_dict


def test_tagging_cannot_rely_on_legitimate_interests(db, officer):
    activity = make_activity(
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
        assessment="a",
        disclosure_url="https://x.example",
        counter_statement_channel="c",
    )
    with pytest.raises(ValidationError):
        activity_approve(activity=activity, officer=officer)


def test_guard_refuses_without_an_approved_activity_and_accepts_with_one(db, officer):
    make_activity(assessment="written")  # draft, not approved
    with pytest.raises(ProcessingNotPermitted, match="no approved processing activity"):
        processing_basis_require(purpose=Purpose.TAGGING)
    activity = activity_approve(activity=ProcessingActivity.objects.get(), officer=officer)
    basis = processing_basis_require(purpose=Purpose.TAGGING)
    assert basis.activity_id == activity.pk
    assert basis.legal_basis == LegalBasis.BUSINESS_IMPROVEMENT


def test_suspending_an_activity_makes_the_guard_refuse(db, officer, approve_activity):
    activity = approve_activity(Purpose.RECOMMENDATION)
    processing_basis_require(purpose=Purpose.RECOMMENDATION)
    activity_suspend(activity=activity, officer=officer)
    with pytest.raises(ProcessingNotPermitted):
        processing_basis_require(purpose=Purpose.RECOMMENDATION)


def test_approval_and_suspension_are_audited(db, officer, approve_activity):
    activity = approve_activity(Purpose.DIRECT_MARKETING)
    activity_suspend(activity=activity, officer=officer)
    actions = list(AuditEntry.objects.values_list("action", "actor", "purpose"))
    assert actions == [
        ("processing_activity.approved", f"user:{officer.pk}", "direct_marketing"),
        ("processing_activity.suspended", f"user:{officer.pk}", "direct_marketing"),
    ]


def test_officer_group_has_exactly_the_register_permissions(db, officer):
    perms = {p.split(".")[1] for p in officer.get_all_permissions()}
    assert "change_processingactivity" in perms
    assert "view_auditentry" in perms
    assert "change_auditentry" not in perms
    assert "delete_auditentry" not in perms
    assert "delete_processingactivity" not in perms


@pytest.mark.django_db(transaction=True)
def test_officer_group_survives_a_flush():
    """A flush (tests, or an operator's reset) must not leave officers without their group."""
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    call_command("flush", "--noinput", verbosity=0)
    group = Group.objects.get(name="Privacy officers")
    assert group.permissions.filter(codename="view_auditentry").exists()
    assert group.permissions.filter(codename="change_datasubjectrequest").exists()


def test_an_approved_activity_edited_out_of_the_rules_makes_the_guard_refuse(db, officer):
    activity = activity_approve(
        activity=make_activity(
            purpose=Purpose.RISK_CONTROL,
            legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
            assessment="balancing test",
            disclosure_url="https://x.example/li",
            counter_statement_channel="form",
        ),
        officer=officer,
    )
    assert processing_basis_require(purpose=Purpose.RISK_CONTROL).activity_id == activity.pk
    # Edited behind the admin's back (the admin validates every save): the public disclosure is gone.
    ProcessingActivity.objects.filter(pk=activity.pk).update(disclosure_url="")
    with pytest.raises(ProcessingNotPermitted, match="breaks the register's rules.*public disclosure"):
        processing_basis_require(purpose=Purpose.RISK_CONTROL)


def test_the_guard_answers_with_the_most_recently_approved_activity(db, officer):
    first = activity_approve(activity=make_activity(name="first", assessment="a"), officer=officer)
    second = activity_approve(activity=make_activity(name="second", assessment="b"), officer=officer)
    assert processing_basis_require(purpose=Purpose.TAGGING).activity_id == second.pk
    activity_suspend(activity=second, officer=officer)
    assert processing_basis_require(purpose=Purpose.TAGGING).activity_id == first.pk
    with pytest.raises(ProcessingNotPermitted, match="unknown purpose"):
        processing_basis_require(purpose="profiling")


def test_editing_an_approved_activity_in_the_admin_sends_it_back_to_draft_with_an_audit_entry(db, client, officer):
    activity = activity_approve(activity=make_activity(assessment="a"), officer=officer)
    client.force_login(officer)
    response = client.post(
        f"/admin/privacy/processingactivity/{activity.pk}/change/",
        {
            "name": "x",
            "purpose": activity.purpose,
            "legal_basis": activity.legal_basis,
            "description": "why, reworded",
            "assessment": "a",
            "disclosure_url": "",
            "counter_statement_channel": "",
            "data_categories": "",
            "recipients": "",
            "retention": "",
            "safeguards": "",
            "confirm_return_to_draft": "on",  # the officer confirms (tests/privacy/test_officer_admin_pages.py)
        },
    )
    assert response.status_code == 302
    activity.refresh_from_db()
    assert activity.status == "draft"
    assert activity.description == "why, reworded"
    assert activity.approved_by is None
    entry = AuditEntry.objects.get(action="processing_activity.reverted_to_draft")
    assert entry.actor == f"user:{officer.pk}"
    assert entry.activity_id == activity.pk
