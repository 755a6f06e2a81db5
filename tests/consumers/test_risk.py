import io
import random
from collections import defaultdict
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers import risk
from consumers.models import Consumer, Event, EventType
from consumers.risk import risk_scan
from consumers.tasks import risk_scan_task
from privacy.models import (
    AuditEntry,
    ProcessingActivity,
    Purpose,
    RiskFlag,
    RiskFlagStatus,
    RiskReason,
    Suppression,
)
from privacy.risk_flags import counter_statement_file, counter_statement_uphold
from privacy.selectors import suppressed_consumer_ids
from privacy.services import ProcessingNotPermitted
from tests.privacy.rights_data import make_consumer, make_event

PURCHASE, CANCEL, VIEW = EventType.PURCHASE, EventType.CANCEL, EventType.VIEW


def synthetic_marketplace(merchant, *, seed: int) -> dict[str, list[int]]:
    """A small marketplace with ordinary behaviour, shared households, and planted abuse.

    - 120 ordinary consumers, each on their own phone, browsing and buying (some on discount),
      cancelling now and then;
    - 15 households of 2, 3 or 4 people sharing a tablet (and one or two of them redeeming offers on it);
    - a ring of 7 accounts on one device, each redeeming an offer there;
    - one consumer who cancels most of their orders.
    """
    rng = random.Random(seed)
    groups: dict[str, list[int]] = defaultdict(list)

    def shop(consumer, device, *, orders, cancels=0, discounted=0):
        for n in range(orders):
            ref = f"{consumer.pk}-{device}-{n}"
            days = rng.uniform(0.5, 25)
            make_event(consumer, merchant, VIEW, device=device, days_ago=days + 0.1)
            make_event(
                consumer,
                merchant,
                PURCHASE,
                device=device,
                days_ago=days,
                order_ref=ref,
                discount="3.00" if n < discounted else "0",
            )
            if n < cancels:
                make_event(consumer, merchant, CANCEL, device=device, days_ago=days - 0.2, order_ref=ref)

    for i in range(120):
        consumer = make_consumer(f"ordinary-{seed}-{i}")
        orders = rng.randint(1, 6)
        shop(consumer, f"phone-{i}", orders=orders, cancels=rng.randint(0, orders // 3), discounted=rng.randint(0, 2))
        groups["ordinary"].append(consumer.pk)
    for h in range(15):
        size = 2 + h % 3
        for m in range(size):
            consumer = make_consumer(f"household-{seed}-{h}-{m}")
            shop(consumer, f"phone-h{h}-{m}", orders=rng.randint(1, 3))
            shop(consumer, f"tablet-{h}", orders=rng.randint(1, 3), discounted=1 if m < 2 else 0)
            groups["household"].append(consumer.pk)
    for r in range(7):
        consumer = make_consumer(f"ring-{seed}-{r}")
        shop(consumer, "ring-device", orders=rng.randint(1, 2), discounted=2)
        groups["ring"].append(consumer.pk)
    canceller = make_consumer(f"canceller-{seed}")
    shop(canceller, "canceller-phone", orders=6, cancels=4)
    groups["canceller"].append(canceller.pk)
    return groups


def flagged(reason: str) -> set[int]:
    return set(
        RiskFlag.objects.filter(status=RiskFlagStatus.ACTIVE, reason=reason).values_list("consumer_id", flat=True)
    )


@pytest.fixture
def risk_activity(approve_activity) -> ProcessingActivity:
    return approve_activity(Purpose.RISK_CONTROL)


@pytest.mark.parametrize("seed", [1, 2])
def test_planted_ring_is_flagged_and_ordinary_households_are_not(merchant, risk_activity, seed):
    groups = synthetic_marketplace(merchant, seed=seed)
    result = risk_scan(actor="test")

    ring = set(groups["ring"])
    assert flagged(RiskReason.SHARED_DEVICE) == ring
    assert flagged(RiskReason.OFFER_MULTI_ACCOUNT) == ring
    assert flagged(RiskReason.CANCELLATION_RATIO) == set(groups["canceller"])
    assert not (flagged(RiskReason.SHARED_DEVICE) | flagged(RiskReason.OFFER_MULTI_ACCOUNT)) & set(groups["household"])
    assert result.findings == 2 * len(ring) + 1

    flag = RiskFlag.objects.filter(reason=RiskReason.SHARED_DEVICE).first()
    assert flag.evidence["accounts_on_device"] == 7
    assert flag.evidence["threshold"] == risk.SHARED_DEVICE_MIN_ACCOUNTS
    assert flag.score == 7
    assert "ring-device" not in str(flag.evidence)
    assert len({f.evidence["ring"] for f in RiskFlag.objects.filter(reason=RiskReason.SHARED_DEVICE)}) == 1
    assert flag.activity_id == risk_activity.pk


def test_flagged_consumers_are_suppressed_from_offers_only(merchant, risk_activity):
    groups = synthetic_marketplace(merchant, seed=3)
    risk_scan(actor="test")
    flagged_ids = set(groups["ring"]) | set(groups["canceller"])
    assert set(suppressed_consumer_ids(has_offer=True)) == flagged_ids
    assert set(suppressed_consumer_ids(has_offer=False)) == set()
    for suppression in Suppression.objects.all():
        flag = RiskFlag.objects.get(pk=int(suppression.reference.split(":")[1]))
        assert (suppression.reason, suppression.scope, suppression.consumer_id) == (
            "risk_flag",
            "offers",
            flag.consumer_id,
        )


def test_thresholds_four_accounts_on_a_device_is_a_household_five_is_flagged(merchant, risk_activity):
    four = [make_consumer(f"four-{i}") for i in range(4)]
    five = [make_consumer(f"five-{i}") for i in range(5)]
    for c in four:
        make_event(c, merchant, VIEW, device="family-tablet")
    for c in five:
        make_event(c, merchant, VIEW, device="busy-tablet")
    risk_scan(actor="test")
    assert flagged(RiskReason.SHARED_DEVICE) == {c.pk for c in five}


def test_device_evidence_older_than_the_window_does_not_count(merchant, risk_activity):
    for i in range(6):
        make_event(make_consumer(f"old-{i}"), merchant, VIEW, device="old-device", days_ago=risk.DEVICE_WINDOW_DAYS + 1)
    risk_scan(actor="test")
    assert not RiskFlag.objects.exists()


def test_offer_rule_counts_only_discounted_purchases(merchant, risk_activity):
    paying = [make_consumer(f"pay-{i}") for i in range(3)]
    redeeming = [make_consumer(f"redeem-{i}") for i in range(3)]
    for c in paying:
        make_event(c, merchant, PURCHASE, device="shop-kiosk", discount="0")
    for c in redeeming:
        make_event(c, merchant, PURCHASE, device="coupon-device", discount="5")
    risk_scan(actor="test")
    assert flagged(RiskReason.OFFER_MULTI_ACCOUNT) == {c.pk for c in redeeming}


@pytest.mark.parametrize(
    ("orders", "cancels", "lines", "flag"),
    [
        (4, 2, 1, True),  # 50 % of 4 orders
        (3, 3, 1, False),  # too few orders to judge
        (10, 4, 1, False),  # 40 %
        (4, 2, 3, True),  # multi-line orders count once each
        (8, 3, 3, False),  # 3 cancelled orders of 3 lines each are 3 cancellations, not 9
    ],
)
def test_cancellation_ratio_rule(merchant, risk_activity, orders, cancels, lines, flag):
    consumer = make_consumer("canceller")
    for n in range(orders):
        for _ in range(lines):
            make_event(consumer, merchant, PURCHASE, order_ref=f"order-{n}", days_ago=10)
            if n < cancels:
                make_event(consumer, merchant, CANCEL, order_ref=f"order-{n}", days_ago=9)
    risk_scan(actor="test")
    assert (consumer.pk in flagged(RiskReason.CANCELLATION_RATIO)) is flag
    if flag:
        evidence = RiskFlag.objects.get().evidence
        assert (evidence["orders"], evidence["cancellations"]) == (orders, cancels)


def test_a_rescan_refreshes_flags_without_duplicating_them(merchant, risk_activity):
    groups = synthetic_marketplace(merchant, seed=4)
    risk_scan(actor="test")
    flags, suppressions = RiskFlag.objects.count(), Suppression.objects.count()
    second = risk_scan(actor="test")
    assert second.counts["new"] == 0
    assert second.counts["refreshed"] == flags
    assert (RiskFlag.objects.count(), Suppression.objects.count()) == (flags, suppressions)
    assert len(groups["ring"]) * 2 + 1 == flags


def test_an_upheld_counter_statement_is_not_overturned_by_the_same_evidence(merchant, risk_activity, officer):
    ring = [make_consumer(f"ring-{i}") for i in range(6)]
    for c in ring:
        make_event(c, merchant, VIEW, device="shared")
    risk_scan(actor="test")
    member = ring[0]
    statement = counter_statement_file(
        pseudonym=member.pseudonym, statement="It is the office tablet.", flag_id=None, actor="test"
    )
    counter_statement_uphold(statement_id=statement.pk, officer=officer)
    assert member.pk not in set(suppressed_consumer_ids(has_offer=True))

    result = risk_scan(actor="test")
    assert result.counts["kept_lifted_after_review"] == 1
    assert member.pk not in flagged(RiskReason.SHARED_DEVICE)
    assert member.pk not in set(suppressed_consumer_ids(has_offer=True))

    # More accounts appear on the device than the officer saw: the flag comes back.
    make_event(make_consumer("ring-new"), merchant, VIEW, device="shared")
    risk_scan(actor="test")
    assert member.pk in flagged(RiskReason.SHARED_DEVICE)
    assert member.pk in set(suppressed_consumer_ids(has_offer=True))


def test_flags_whose_evidence_is_gone_expire_with_their_suppression(merchant, risk_activity):
    ring = [make_consumer(f"ring-{i}") for i in range(5)]
    for c in ring:
        make_event(c, merchant, VIEW, device="shared", days_ago=1)
    risk_scan(actor="test")
    later = timezone.now() + timedelta(days=risk.FLAG_TTL_DAYS + 2)
    result = risk_scan(actor="test", now=later)
    assert result.counts["expired"] == 5
    assert not RiskFlag.objects.filter(status=RiskFlagStatus.ACTIVE).exists()
    assert set(RiskFlag.objects.values_list("lift_reason", flat=True)) == {"expired"}
    assert not set(suppressed_consumer_ids(has_offer=True))


def test_the_scan_is_audited_under_the_legitimate_interests_activity(merchant, risk_activity):
    synthetic_marketplace(merchant, seed=5)
    risk_scan(actor="command:risk_scan")
    entry = AuditEntry.objects.filter(action="risk_flags.recorded").get()
    assert (entry.purpose, entry.legal_basis, entry.activity_id) == (
        "risk_control",
        "legitimate_interests",
        risk_activity.pk,
    )
    assert entry.counts["new"] == 15
    assert entry.counts["new.shared_device"] == 7
    assert entry.actor == "command:risk_scan"


# -- the guard ---------------------------------------------------------------------------------------------


def assert_refused_and_nothing_written(before: int):
    with pytest.raises(ProcessingNotPermitted) as exc:
        risk_scan(actor="test")
    assert exc.value.purpose == "risk_control"
    assert not RiskFlag.objects.exists()
    assert not Suppression.objects.exists()
    assert AuditEntry.objects.count() == before
    return exc.value


def test_refuses_without_an_approved_activity(merchant, approve_activity):
    synthetic_marketplace(merchant, seed=6)
    approve_activity(Purpose.TAGGING)  # approved, but for another purpose
    ProcessingActivity.objects.create(
        name="risk draft",
        purpose=Purpose.RISK_CONTROL,
        legal_basis="legitimate_interests",
        description="d",
        assessment="a",
        disclosure_url="https://example.test/li",
        counter_statement_channel="form",
    )  # lawful as written, but nobody approved it
    error = assert_refused_and_nothing_written(AuditEntry.objects.count())
    assert "no approved processing activity" in error.reason


@pytest.mark.parametrize("emptied", ["assessment", "disclosure_url", "counter_statement_channel"])
def test_refuses_when_the_approved_activity_lost_its_assessment_or_disclosure(merchant, risk_activity, emptied):
    synthetic_marketplace(merchant, seed=7)
    ProcessingActivity.objects.filter(pk=risk_activity.pk).update(**{emptied: ""})  # edited behind the admin's back
    error = assert_refused_and_nothing_written(AuditEntry.objects.count())
    assert emptied in error.reason


def test_refuses_once_the_activity_is_suspended(merchant, risk_activity, officer):
    from privacy.services import activity_suspend

    activity_suspend(activity=risk_activity, officer=officer)
    make_event(make_consumer("x"), merchant, VIEW, device="d")
    assert_refused_and_nothing_written(AuditEntry.objects.count())


def test_task_and_command_refuse_too(db):
    assert risk_scan_task.delay().get() == {"refused": "no approved processing activity in the register"}
    with pytest.raises(CommandError, match="not permitted"):
        call_command("risk_scan", stdout=io.StringIO())
    assert not RiskFlag.objects.exists()


def test_task_and_command_run_under_an_approved_activity(merchant, risk_activity):
    synthetic_marketplace(merchant, seed=8)
    assert risk_scan_task.delay().get()["new"] == 15
    out = io.StringIO()
    call_command("risk_scan", stdout=out)
    assert '"refreshed": 15' in out.getvalue()


# -- the SQL rules against a plain-Python reading of the same rules -----------------------------------------


def oracle(events: list[dict], now) -> set[tuple[int, str, int]]:
    found = set()
    device_since = now - timedelta(days=risk.DEVICE_WINDOW_DAYS)
    for reason, keep, threshold in (
        (RiskReason.SHARED_DEVICE, lambda e: True, risk.SHARED_DEVICE_MIN_ACCOUNTS),
        (
            RiskReason.OFFER_MULTI_ACCOUNT,
            lambda e: e["type"] == PURCHASE and e["discount"] > 0,
            risk.OFFER_DEVICE_MIN_ACCOUNTS,
        ),
    ):
        accounts = defaultdict(set)
        for e in events:
            if e["device"] and e["at"] >= device_since and keep(e):
                accounts[e["device"]].add(e["consumer"])
        best: dict[int, int] = {}
        for members in accounts.values():
            if len(members) >= threshold:
                for c in members:
                    best[c] = max(best.get(c, 0), len(members))
        found |= {(c, reason, n) for c, n in best.items()}
    since = now - timedelta(days=risk.CANCELLATION_WINDOW_DAYS)
    per = defaultdict(lambda: {PURCHASE: [set(), 0], CANCEL: [set(), 0]})
    for e in events:
        if e["at"] >= since and e["type"] in (PURCHASE, CANCEL):
            refs, loose = per[e["consumer"]][e["type"]]
            if e["ref"]:
                refs.add(e["ref"])
            else:
                per[e["consumer"]][e["type"]][1] = loose + 1
    for c, kinds in per.items():
        orders = len(kinds[PURCHASE][0]) + kinds[PURCHASE][1]
        cancels = len(kinds[CANCEL][0]) + kinds[CANCEL][1]
        if orders >= risk.CANCELLATION_MIN_ORDERS and cancels * 100 >= orders * risk.CANCELLATION_MIN_RATIO_PERCENT:
            found.add((c, RiskReason.CANCELLATION_RATIO, round(100 * cancels / orders)))
    return found


event_strategy = st.fixed_dictionaries(
    {
        "consumer": st.integers(0, 7),
        "device": st.sampled_from(["", "d1", "d2", "d3"]),
        "type": st.sampled_from([VIEW, PURCHASE, PURCHASE, CANCEL]),
        "discount": st.sampled_from([0, 0, 2]),
        "ref": st.sampled_from(["", "r1", "r2", "r3", "r4", "r5"]),
        "days_ago": st.integers(0, 120),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_strategy, max_size=60))
def test_sql_rules_agree_with_a_plain_reading_of_the_rules(merchant, events):
    Event.objects.all().delete()
    Consumer.objects.all().delete()
    now = timezone.now()
    consumers = [make_consumer(f"h-{i}").pk for i in range(8)]
    rows = []
    for e in events:
        at = now - timedelta(days=e["days_ago"], hours=6)  # never exactly on a window edge
        make_event(
            consumers[e["consumer"]],
            merchant,
            e["type"],
            at=at,
            device=e["device"],
            discount=str(e["discount"]),
            order_ref=e["ref"],
        )
        rows.append({**e, "consumer": consumers[e["consumer"]], "at": at})
    got = {(f.consumer_id, f.reason, f.score) for rule in risk.RULES for f in rule(now=now)}
    assert got == oracle(rows, now)
