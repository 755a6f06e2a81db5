import pytest

from privacy.models import AuditEntry, CounterStatement, Purpose, RiskFlag, RiskReason, StatementStatus, Suppression
from privacy.risk_flags import (
    AlreadyReviewed,
    RiskFinding,
    RiskReviewError,
    counter_statement_dismiss,
    counter_statement_uphold,
    risk_flags_lift,
    risk_flags_record,
)
from privacy.selectors import suppressed_consumer_ids
from privacy.services import processing_basis_require
from tests.privacy.rights_data import LogCollector, make_consumer

RAW = "henry@example.test"
STATEMENTS = "/api/v1/privacy/counter-statements"


@pytest.fixture
def flagged(approve_activity):
    """Henry with two active flags, Iris with one."""
    approve_activity(Purpose.RISK_CONTROL)
    henry, iris = make_consumer(RAW), make_consumer("iris@example.test")
    risk_flags_record(
        findings=[
            RiskFinding(henry.pk, RiskReason.SHARED_DEVICE, 6, {"accounts_on_device": 6}),
            RiskFinding(henry.pk, RiskReason.CANCELLATION_RATIO, 75, {"orders": 4, "cancellations": 3}),
            RiskFinding(iris.pk, RiskReason.SHARED_DEVICE, 6, {"accounts_on_device": 6}),
        ],
        basis=processing_basis_require(purpose=Purpose.RISK_CONTROL),
        rule_version="test",
        actor="test",
        flag_ttl_days=90,
    )
    return henry, iris


def file(client, **body):
    return client.post(STATEMENTS, body, format="json")


def test_operator_files_a_statement_against_one_flag(flagged, operator_client):
    henry, _ = flagged
    flag = RiskFlag.objects.get(consumer=henry, reason=RiskReason.SHARED_DEVICE)
    with LogCollector() as logs:
        response = file(operator_client, consumer_id=RAW, statement="My family shares the tablet.", flag=flag.pk)
    assert response.status_code == 201
    body = response.json()
    assert (body["flag"], body["status"]) == (flag.pk, "received")
    assert RAW not in response.content.decode() + logs.text()
    assert henry.pseudonym not in response.content.decode() + logs.text()
    statement = CounterStatement.objects.get()
    assert (statement.consumer_id, statement.statement) == (henry.pk, "My family shares the tablet.")
    assert AuditEntry.objects.filter(action="counter_statement.received", details__flag_id=flag.pk).exists()
    assert operator_client.get(f"{STATEMENTS}/{body['id']}").json()["status"] == "received"


def test_another_consumers_flag_or_an_unknown_consumer_is_refused_alike(flagged, operator_client):
    _, iris = flagged
    iris_flag = RiskFlag.objects.get(consumer=iris)
    foreign = file(operator_client, consumer_id=RAW, statement="mine", flag=iris_flag.pk)
    missing = file(operator_client, consumer_id=RAW, statement="mine", flag=999999)
    assert foreign.status_code == missing.status_code == 422
    assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] == "unknown_flag"
    unknown = file(operator_client, consumer_id="nobody@example.test", statement="mine")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_consumer"
    assert "nobody@example.test" not in unknown.content.decode()
    assert file(operator_client, consumer_id=RAW, statement="   ").status_code == 400
    assert not CounterStatement.objects.exists()


def test_only_operator_keys_file_statements(flagged, merchant_client):
    assert file(merchant_client, consumer_id=RAW, statement="x").status_code == 403


def test_upholding_lifts_the_flag_and_its_suppression_at_once(flagged, operator_client, officer):
    henry, iris = flagged
    flag = RiskFlag.objects.get(consumer=henry, reason=RiskReason.SHARED_DEVICE)
    statement_id = file(operator_client, consumer_id=RAW, statement="family tablet", flag=flag.pk).json()["id"]
    assert henry.pk in set(suppressed_consumer_ids(has_offer=True))

    counts = counter_statement_uphold(statement_id=statement_id, officer=officer, note="Household confirmed.")

    assert counts == {"flags_lifted": 1, "suppressions_lifted": 1}
    flag.refresh_from_db()
    assert (flag.status, flag.lift_reason) == ("lifted", "counter_statement_upheld")
    # Henry's other flag still keeps him out of offers; Iris is untouched.
    assert henry.pk in set(suppressed_consumer_ids(has_offer=True))
    assert RiskFlag.objects.filter(consumer=henry, status="active").count() == 1
    assert iris.pk in set(suppressed_consumer_ids(has_offer=True))
    entry = AuditEntry.objects.get(action="counter_statement.upheld")
    assert entry.actor == f"user:{officer.pk}"
    assert entry.counts == counts
    reviewed = operator_client.get(f"{STATEMENTS}/{statement_id}").json()
    assert (reviewed["status"], reviewed["review_note"]) == ("upheld", "Household confirmed.")


def test_a_statement_without_a_flag_lifts_every_active_flag_of_the_consumer(flagged, operator_client, officer):
    henry, iris = flagged
    statement_id = file(operator_client, consumer_id=RAW, statement="none of this is me").json()["id"]
    counter_statement_uphold(statement_id=statement_id, officer=officer)
    assert not RiskFlag.objects.filter(consumer=henry, status="active").exists()
    assert henry.pk not in set(suppressed_consumer_ids(has_offer=True))
    assert iris.pk in set(suppressed_consumer_ids(has_offer=True))
    assert Suppression.objects.filter(consumer=henry, lifted_at__isnull=False).count() == 2


def test_dismissal_needs_a_reason_keeps_the_flag_and_is_final(flagged, operator_client, officer):
    henry, _ = flagged
    statement_id = file(operator_client, consumer_id=RAW, statement="not me").json()["id"]
    with pytest.raises(RiskReviewError):
        counter_statement_dismiss(statement_id=statement_id, officer=officer, note=" ")
    counter_statement_dismiss(statement_id=statement_id, officer=officer, note="Seven accounts, one device.")
    assert CounterStatement.objects.get().status == StatementStatus.DISMISSED
    assert henry.pk in set(suppressed_consumer_ids(has_offer=True))
    with pytest.raises(AlreadyReviewed):
        counter_statement_uphold(statement_id=statement_id, officer=officer)
    assert AuditEntry.objects.filter(action="counter_statement.dismissed").count() == 1


def test_officer_lifts_flags_directly(flagged, officer):
    _, iris = flagged
    counts = risk_flags_lift(flag_ids=[RiskFlag.objects.get(consumer=iris).pk], officer=officer, note="checked")
    assert counts == {"flags_lifted": 1, "suppressions_lifted": 1}
    assert iris.pk not in set(suppressed_consumer_ids(has_offer=True))
    assert AuditEntry.objects.filter(action="risk_flags.lifted").exists()


def test_blacklist_shows_pseudonyms_reasons_and_counts_only(flagged, operator_client, merchant_client):
    henry, iris = flagged
    response = operator_client.get("/api/v1/privacy/blacklist")
    assert response.status_code == 200
    body = response.json()
    assert body["summary"] == {
        "consumers": 2,
        "flags": 3,
        "by_reason": {"shared_device": 2, "offer_multi_account": 0, "cancellation_ratio": 1},
    }
    assert body["count"] == 2
    entries = {e["pseudonym"]: e for e in body["results"]}
    assert set(entries) == {henry.pseudonym, iris.pseudonym}
    assert {f["reason"] for f in entries[henry.pseudonym]["flags"]} == {"shared_device", "cancellation_ratio"}
    assert entries[iris.pseudonym]["flags"][0]["evidence"] == {"accounts_on_device": 6}
    assert RAW not in response.content.decode()
    assert merchant_client.get("/api/v1/privacy/blacklist").status_code == 403


def test_blacklist_pages_by_consumer_and_drops_lifted_flags(flagged, operator_client, officer):
    henry, iris = flagged
    first = operator_client.get("/api/v1/privacy/blacklist?limit=1").json()
    second = operator_client.get("/api/v1/privacy/blacklist?limit=1&offset=1").json()
    assert len(first["results"]) == len(second["results"]) == 1
    assert first["results"][0]["pseudonym"] != second["results"][0]["pseudonym"]
    assert operator_client.get("/api/v1/privacy/blacklist?limit=0").status_code == 400
    assert operator_client.get("/api/v1/privacy/blacklist?offset=x").status_code == 400

    risk_flags_lift(flag_ids=list(RiskFlag.objects.filter(consumer=iris).values_list("pk", flat=True)), officer=officer)
    body = operator_client.get("/api/v1/privacy/blacklist").json()
    assert [e["pseudonym"] for e in body["results"]] == [henry.pseudonym]
