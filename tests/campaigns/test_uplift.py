"""Uplift models: meta-learners, Qini and uplift@k, and targeting persuadables against targeting by propensity."""

from __future__ import annotations

import numpy as np
import pytest

from campaigns.uplift import (
    UpliftModel,
    incremental_at,
    planted_campaign,
    qini_coefficient,
    qini_curve,
    split_holdout,
    uplift_at_k,
    uplift_evaluate,
)


def test_uplift_at_k_and_the_qini_curve_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    treatment = np.array([1, 0, 1, 0, 1, 0], bool)
    converted = np.array([1, 0, 1, 1, 0, 0])
    # Top half: treated rows 0 and 2 both converted, control row 1 did not: 1.0 - 0.0.
    assert uplift_at_k(scores, treatment, converted, 0.5) == pytest.approx(1.0)
    assert incremental_at(scores, treatment, converted, 0.5) == pytest.approx(3.0)
    x, q = qini_curve(scores, treatment, converted)
    assert x.tolist() == [0, 1, 2, 3, 4, 5, 6]
    # After 4 rows: 2 treated conversions, 1 control conversion x (2 treated / 2 control).
    assert q[4] == pytest.approx(1.0)
    assert q[-1] == pytest.approx(2 - 1 * 3 / 3)


def test_a_perfect_ranking_has_a_positive_qini_and_its_reverse_a_negative_one():
    data = planted_campaign(n=6_000, seed=3)
    assert qini_coefficient(data.true_uplift, data.treatment, data.converted) > 0
    assert qini_coefficient(-data.true_uplift, data.treatment, data.converted) < 0


@pytest.mark.parametrize("learner", ["t", "x"])
def test_targeting_persuadables_earns_more_than_targeting_by_propensity(learner):
    """Planted heterogeneous effect: loyal buyers convert most but are barely moved; the persuadables are."""
    data = planted_campaign(n=16_000, seed=11)
    held = split_holdout(data.treatment.size, fraction=0.4, seed=1)
    model = UpliftModel(learner=learner).fit(data.features[~held], data.treatment[~held], data.converted[~held])
    result = uplift_evaluate(model, data.features[held], data.treatment[held], data.converted[held])
    assert result.incremental_top_20 > 1.5 * max(result.incremental_top_20_by_propensity, 1.0)
    assert result.qini > 0
    assert result.uplift_at_20 > 0.05


def test_a_campaign_with_too_small_an_arm_is_refused():
    data = planted_campaign(n=400, treatment_share=0.95, seed=2)
    with pytest.raises(ValueError, match="at least 50 treatment and 50 control"):
        UpliftModel().fit(data.features, data.treatment, data.converted)
