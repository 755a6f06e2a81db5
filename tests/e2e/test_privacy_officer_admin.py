"""A privacy officer works in the admin: approves activities (rules shown inline), verifies the audit chain."""

import re

import pytest
from playwright.sync_api import expect

from privacy.models import LegalBasis, ProcessingActivity, Purpose

pytestmark = pytest.mark.e2e


@pytest.fixture
def drafts(db):
    lawful = ProcessingActivity.objects.create(
        name="Campaign sends",
        purpose=Purpose.DIRECT_MARKETING,
        legal_basis=LegalBasis.CONSENT,
        description="In-app promotions to consumers who opted in.",
    )
    risky = ProcessingActivity.objects.create(
        name="Fraud flags",
        purpose=Purpose.RISK_CONTROL,
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
        description="Flags accounts sharing devices.",
    )
    return lawful, risky


def test_officer_approves_an_activity_and_verifies_the_chain(browsing, officer, drafts):
    lawful, risky = drafts
    page = browsing.page
    browsing.sign_in("officer", "officer-pass-123", path="/admin/login/")
    expect(page.locator("#officer-desk")).to_contain_text("2")
    expect(page.locator("#officer-desk")).to_contain_text("awaiting approval")
    browsing.shot("officer_desk")

    page.get_by_role("link", name=re.compile("processing activities awaiting approval")).click()
    page.get_by_role("checkbox", name=re.compile("Campaign sends")).check()
    page.get_by_role("checkbox", name=re.compile("Fraud flags")).check()
    page.get_by_label("Action:").select_option(label="Approve the selected activities")
    page.get_by_role("button", name="Go").click()
    messages = page.locator("ul.messagelist")
    expect(messages).to_contain_text("“Campaign sends” approved.")
    expect(messages).to_contain_text("“Fraud flags” was not approved")
    expect(messages).to_contain_text("disclosure")
    browsing.shot("register_after_approve")
    lawful.refresh_from_db()
    risky.refresh_from_db()
    assert (lawful.status, risky.status) == ("approved", "draft")

    # On the activity itself the rules' errors sit next to their fields.
    browsing.goto(f"/admin/privacy/processingactivity/{risky.pk}/change/")
    page.get_by_role("button", name="Save and approve").click()
    expect(page.locator(".field-disclosure_url .errorlist")).to_contain_text("public disclosure")
    expect(page.locator(".field-counter_statement_channel .errorlist")).to_contain_text("counter-statement channel")
    expect(page.locator(".field-assessment .errorlist")).to_contain_text("written assessment")
    browsing.shot("activity_rules_inline")
    page.get_by_role("textbox", name="Assessment:").fill(
        "Balancing test: fraud losses outweigh the limited effect on consumers."
    )
    page.get_by_label("Disclosure url").fill("https://marketplace.example/privacy/legitimate-interests")
    page.get_by_label("Counter statement channel").fill("In-app form under Privacy > Counter statement")
    page.get_by_role("button", name="Save and approve").click()
    expect(page.locator("ul.messagelist")).to_contain_text("“Fraud flags” approved.")
    risky.refresh_from_db()
    assert risky.status == "approved"

    browsing.goto("/admin/privacy/auditentry/")
    expect(page.get_by_text("processing_activity.approved").first).to_be_visible()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Audit chain intact: 2 entries verified.")
    browsing.shot("audit_log_verified")


def test_audit_log_and_consent_ledger_are_read_only_for_officers(browsing, officer, drafts):
    browsing.sign_in("officer", "officer-pass-123", path="/admin/login/")
    page = browsing.page
    browsing.goto("/admin/privacy/auditentry/")
    expect(page.locator(".object-tools .addlink")).to_have_count(0)
    browsing.goto("/admin/privacy/consentrecord/")
    expect(page.locator(".object-tools .addlink")).to_have_count(0)
    browsing.shot("consent_ledger")


def test_merchant_users_cannot_enter_the_admin(browsing, merchant_user):
    browsing.sign_in("marketer", "marketer-pass-123", path="/admin/login/")
    page = browsing.page
    expect(page.locator(".errornote")).to_contain_text("staff account")
    browsing.goto("/admin/privacy/auditentry/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))


def test_officer_desk_lists_the_subject_rights_queues(browsing, officer):
    from privacy.subject_rights import subject_request_submit

    subject_request_submit(kind="access", raw_identifier="someone@example.com", actor="apikey:1")
    browsing.sign_in("officer", "officer-pass-123", path="/admin/login/")
    page = browsing.page
    desk = page.locator("#officer-desk")
    expect(desk).to_contain_text("data-subject requests open")
    expect(desk).to_contain_text("counter statements awaiting review")
    page.get_by_role("link", name=re.compile("data-subject requests open")).click()
    expect(page).not_to_have_url(re.compile(r"[?&]e=1"))
    expect(page.locator("#result_list")).to_contain_text("Access")
    browsing.shot("subject_requests_queue")


def test_erasure_from_the_queue_shows_what_will_be_erased_before_anything_is(browsing, officer, merchant):
    from consumers.models import Consumer
    from privacy.subject_rights import subject_request_submit
    from tests.privacy.rights_data import make_consumer, make_event

    consumer = make_consumer("erase-me@example.com")
    make_event(consumer, merchant)
    make_event(consumer, merchant)
    request = subject_request_submit(kind="erasure", raw_identifier="erase-me@example.com", actor="apikey:1")
    browsing.sign_in("officer", "officer-pass-123", path="/admin/login/")
    page = browsing.page
    browsing.goto("/admin/privacy/datasubjectrequest/")
    page.locator(f"input[name='_selected_action'][value='{request.pk}']").check()
    page.locator("select[name='action']").select_option("process_selected")
    page.get_by_role("button", name="Go").click()

    expect(page.get_by_role("heading", name=re.compile(f"Request {request.pk}: Erasure"))).to_be_visible()
    expect(page.locator(".errornote")).to_contain_text("cannot be undone")
    expect(page.get_by_role("table", name="What will be erased")).to_contain_text("consumers.events")
    browsing.shot("erasure_confirmation")
    assert Consumer.objects.filter(pk=consumer.pk).exists()  # nothing erased by looking

    page.get_by_role("button", name=re.compile("Yes, erase and process 1")).click()
    expect(page.locator(".messagelist")).to_contain_text(f"Request {request.pk} (erasure) completed")
    assert not Consumer.objects.filter(pk=consumer.pk).exists()
    browsing.goto(f"/admin/privacy/datasubjectrequest/{request.pk}/change/")
    expect(page.get_by_text(re.compile(r"Erased \d+ records"))).to_be_visible()
    expect(page.get_by_role("link", name="Download the whole result (JSON)")).to_be_visible()
    browsing.shot("erasure_result")


def test_editing_an_approved_activity_is_confirmed_first(browsing, officer, drafts, approve_activity):
    activity = approve_activity(Purpose.DIRECT_MARKETING)
    browsing.sign_in("officer", "officer-pass-123", path="/admin/login/")
    page = browsing.page
    browsing.goto(f"/admin/privacy/processingactivity/{activity.pk}/change/")
    page.get_by_label("Description").fill("Now also e-mail.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-confirm_return_to_draft .errorlist")).to_contain_text("Tick the box to save anyway")
    browsing.shot("activity_edit_needs_confirmation")
    activity.refresh_from_db()
    assert activity.status == "approved"

    page.get_by_label("I understand that saving returns this activity to draft").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("is back in draft")
    activity.refresh_from_db()
    assert (activity.status, activity.description) == ("draft", "Now also e-mail.")
