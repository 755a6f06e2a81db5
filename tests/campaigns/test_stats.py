import math

import pytest

from campaigns.stats import uplift_two_proportions


def test_uplift_and_interval_match_a_hand_computed_example():
    # treatment 120/1000 = 0.12, control 90/1000 = 0.09, difference 0.03
    # SE = sqrt(0.12·0.88/1000 + 0.09·0.91/1000) = sqrt(0.0001056 + 0.0000819) = sqrt(0.0001875) = 0.0136931
    # 95% CI = 0.03 ± 1.959964 · 0.0136931 = 0.03 ± 0.0268380 → [0.0031620, 0.0568380]
    # pooled p = 210/2000 = 0.105; pooled SE = sqrt(0.105·0.895·(2/1000)) = 0.0137095; z = 2.18826
    result = uplift_two_proportions(
        treatment_conversions=120, treatment_size=1000, control_conversions=90, control_size=1000
    )
    assert result.treatment_rate == pytest.approx(0.12)
    assert result.control_rate == pytest.approx(0.09)
    assert result.absolute == pytest.approx(0.03)
    assert result.ci_low == pytest.approx(0.0031620, abs=1e-6)
    assert result.ci_high == pytest.approx(0.0568380, abs=1e-6)
    assert result.relative == pytest.approx(1 / 3)
    assert result.z == pytest.approx(2.18826, abs=1e-4)
    assert result.p_value == pytest.approx(math.erfc(2.18826 / math.sqrt(2)), abs=1e-4)
    assert result.p_value == pytest.approx(0.02865, abs=1e-4)


def test_no_control_group_means_no_uplift():
    result = uplift_two_proportions(treatment_conversions=5, treatment_size=100, control_conversions=0, control_size=0)
    assert result.absolute is None and "control" in result.note


def test_no_conversions_anywhere_is_no_evidence():
    result = uplift_two_proportions(treatment_conversions=0, treatment_size=500, control_conversions=0, control_size=50)
    assert result.absolute == 0 and result.p_value == 1.0 and result.relative is None


def test_conversions_cannot_exceed_the_group():
    with pytest.raises(ValueError):
        uplift_two_proportions(treatment_conversions=11, treatment_size=10, control_conversions=0, control_size=10)


def test_released_uplift_counts_the_release_noise_so_noise_alone_never_makes_a_difference():
    """Two variants that convert alike can be released 70 conversions apart (the noise of standard precision has a
    standard deviation of 20 per count). Sampling alone would call that a lead; with the noise counted it is not."""
    from campaigns.selectors import uplift_from_released
    from privacy.release import count_from_noisy

    def released(noisy):
        return count_from_noisy(noisy=noisy, precision="standard")

    sampling_only = uplift_two_proportions(
        treatment_conversions=440, treatment_size=1500, control_conversions=370, control_size=1500
    )
    assert sampling_only.ci_low > 0  # what the interval said before it counted the noise
    lead = uplift_from_released(
        a_converted=released(440), a_size=released(1500), b_converted=released(370), b_size=released(1500)
    )
    assert lead.ci_low < 0 < lead.ci_high
    clear = uplift_from_released(
        a_converted=released(700), a_size=released(1500), b_converted=released(300), b_size=released(1500)
    )
    assert clear.ci_low > 0  # a real difference still shows
