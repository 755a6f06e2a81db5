"""The privacy budget: new distinct releases spend, repeats are free, exhaustion refuses, periods renew,
background jobs are never refused, officers set allowances and see spending, audited once a day per merchant."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pyroaring import BitMap

from privacy import budget as budget_module
from privacy.models import AuditEntry, BudgetPeriod, PrivacyBudget, ReleaseLedger
from privacy.release import PRECISIONS, PREVIEW, STANDARD, count_from_noisy, noisy_count
from privacy.selectors import budget_remaining
from privacy.services import PrivacyBudgetExhausted, release_count, release_counts, release_spending_audit, release_sum

SET_A = BitMap(range(1000, 3000))
SET_B = BitMap(range(5000, 5400))


def _at(monkeypatch, when: datetime) -> None:
    monkeypatch.setattr(budget_module.timezone, "now", lambda: when)


def test_a_new_release_spends_and_a_repeat_is_free(merchant):
    first = release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    status = budget_remaining(merchant_id=merchant.pk)
    assert status.spent == pytest.approx(PRECISIONS[STANDARD].rho) and status.releases == 1
    again = release_count(merchant_id=merchant.pk, subject="a", members=BitMap(SET_A), precision=STANDARD)
    assert again == first
    assert budget_remaining(merchant_id=merchant.pk).spent == pytest.approx(PRECISIONS[STANDARD].rho)
    # The number is the mechanism's for this set, whoever asks and however often.
    key, noisy = noisy_count(subject="a", count=len(SET_A), precision=STANDARD)
    assert first == count_from_noisy(noisy=noisy, precision=STANDARD, key=key)
    assert ReleaseLedger.objects.get(merchant=merchant).value == noisy


def test_preview_and_standard_are_distinct_releases_at_their_own_cost(merchant):
    release_counts(merchant_id=merchant.pk, subjects=["a", "b"], counts=[len(SET_A), len(SET_B)], precision=PREVIEW)
    release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    expected = 2 * PRECISIONS[PREVIEW].rho + PRECISIONS[STANDARD].rho
    assert budget_remaining(merchant_id=merchant.pk).spent == pytest.approx(expected)
    assert PRECISIONS[STANDARD].rho / PRECISIONS[PREVIEW].rho == pytest.approx(25)


def test_exhaustion_refuses_new_releases_but_not_repeats_or_background_jobs(merchant, monkeypatch):
    _at(monkeypatch, datetime(2026, 3, 14, 10, 0, tzinfo=UTC))
    PrivacyBudget.objects.create(merchant=merchant, allowance_rho=PRECISIONS[STANDARD].rho * 1.5)
    shown = release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    with pytest.raises(PrivacyBudgetExhausted) as refused:
        release_count(merchant_id=merchant.pk, subject="b", members=SET_B, precision=STANDARD)
    assert refused.value.renews_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert "2026-04-01 00:00 UTC" in str(refused.value)
    assert refused.value.needed == pytest.approx(PRECISIONS[STANDARD].rho)
    # All or none: a pair that includes an unpaid set is refused whole, and nothing is recorded.
    with pytest.raises(PrivacyBudgetExhausted):
        release_counts(
            merchant_id=merchant.pk, subjects=["a", "b"], counts=[len(SET_A), len(SET_B)], precision=STANDARD
        )
    assert ReleaseLedger.objects.filter(merchant=merchant).count() == 1
    # Already released: still free. Background jobs: same numbers, never spent, never refused.
    assert release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD) == shown
    background = release_count(merchant_id=merchant.pk, subject="b", members=SET_B, precision=STANDARD, charge=False)
    key, noisy = noisy_count(subject="b", count=len(SET_B), precision=STANDARD)
    assert background == count_from_noisy(noisy=noisy, precision=STANDARD, key=key)
    assert budget_remaining(merchant_id=merchant.pk).releases == 1


def test_the_allowance_renews_with_the_period(merchant, monkeypatch):
    PrivacyBudget.objects.create(merchant=merchant, allowance_rho=PRECISIONS[STANDARD].rho)
    _at(monkeypatch, datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    with pytest.raises(PrivacyBudgetExhausted) as refused:
        release_count(merchant_id=merchant.pk, subject="b", members=SET_B, precision=STANDARD)
    assert refused.value.renews_at == datetime(2027, 1, 1, tzinfo=UTC)
    _at(monkeypatch, datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert budget_remaining(merchant_id=merchant.pk).spent == 0
    release_count(merchant_id=merchant.pk, subject="b", members=SET_B, precision=STANDARD)
    assert BudgetPeriod.objects.get(merchant=merchant, period_start=date(2027, 1, 1)).releases == 1


@pytest.mark.parametrize(
    ("period", "start", "renews"),
    [
        ("month", date(2026, 5, 1), datetime(2026, 6, 1, tzinfo=UTC)),
        ("week", date(2026, 5, 18), datetime(2026, 5, 25, tzinfo=UTC)),
        ("day", date(2026, 5, 20), datetime(2026, 5, 21, tzinfo=UTC)),
    ],
)
def test_periods(settings, period, start, renews):
    settings.PRIVACY_BUDGET_PERIOD = period
    at = datetime(2026, 5, 20, 15, 0, tzinfo=UTC)  # a Wednesday
    assert budget_module.period_start(at) == start
    assert budget_module.period_renews_at(start) == renews


def test_other_merchants_have_their_own_budget_and_the_same_numbers(merchant, other_merchant):
    PrivacyBudget.objects.create(merchant=merchant, allowance_rho=0.0)
    with pytest.raises(PrivacyBudgetExhausted):
        release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    mine = release_count(merchant_id=other_merchant.pk, subject="a", members=SET_A, precision=STANDARD, charge=False)
    theirs = release_count(merchant_id=other_merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    assert mine == theirs  # one set, one number, for everyone (no averaging across merchants)


def test_sums_are_clamped_noisy_and_spend_like_counts(merchant):
    values = [100] * (len(SET_A) - 1) + [10_000_000]  # one big spender cannot move the sum past the clamp
    total, count = release_sum(
        merchant_id=merchant.pk,
        subject="a",
        members=SET_A,
        values=values,
        clamp=500,
        name="revenue",
        data_version="events:42",
    )
    assert not total.suppressed and not count.suppressed
    assert abs(total.value - (100 * (len(SET_A) - 1) + 500)) <= total.error_bound * 3
    assert budget_remaining(merchant_id=merchant.pk).releases == 2


def test_spending_is_audited_once_a_day_per_merchant(merchant, other_merchant):
    release_counts(merchant_id=merchant.pk, subjects=["a", "b"], counts=[len(SET_A), len(SET_B)], precision=PREVIEW)
    release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)  # a repeat: not counted
    release_count(merchant_id=other_merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    assert not AuditEntry.objects.filter(action="privacy_budget.spent").exists()  # nothing per keystroke
    today = datetime.now(UTC).date()
    assert release_spending_audit(day=today) == 2
    entry = AuditEntry.objects.get(action="privacy_budget.spent", merchant_id=merchant.pk)
    assert entry.counts["releases"] == 3 and entry.counts["releases_preview"] == 2
    assert entry.counts["rho"] == pytest.approx(2 * PRECISIONS[PREVIEW].rho + PRECISIONS[STANDARD].rho)


def test_officers_set_allowances_and_see_spending(client, officer, merchant):
    release_count(merchant_id=merchant.pk, subject="a", members=SET_A, precision=STANDARD)
    client.force_login(officer)
    assert client.get("/admin/privacy/budgetperiod/").status_code == 200
    assert client.get("/admin/privacy/releaseledger/").status_code == 200
    response = client.post(
        "/admin/privacy/privacybudget/add/", {"merchant": merchant.pk, "allowance_rho": "1.5", "note": "pilot"}
    )
    assert response.status_code == 302, response.content[:500]
    assert budget_remaining(merchant_id=merchant.pk).allowance == 1.5
    assert AuditEntry.objects.filter(action="privacy_budget.allowance_set", merchant_id=merchant.pk).exists()
    assert client.get("/admin/privacy/privacybudget/").status_code == 200
