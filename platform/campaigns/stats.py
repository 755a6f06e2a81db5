"""Uplift of a campaign: the difference of two conversion proportions, with a 95% confidence interval.

For treatment (x_t conversions of n_t consumers) and control (x_c of n_c):

    p_t = x_t / n_t,  p_c = x_c / n_c,  uplift = p_t − p_c
    SE  = sqrt(p_t (1 − p_t) / n_t + p_c (1 − p_c) / n_c)          (unpooled, for the interval)
    95% CI = uplift ± z_0.975 × SE,  z_0.975 = 1.959963984540054

and the two-proportion z test of "no difference" uses the pooled proportion
p = (x_t + x_c) / (n_t + n_c):  z = uplift / sqrt(p (1 − p) (1/n_t + 1/n_c)),
two-sided p-value = erfc(|z| / sqrt 2). The relative uplift is uplift / p_c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Uplift:
    treatment_rate: float | None
    control_rate: float | None
    absolute: float | None  # p_t − p_c
    ci_low: float | None
    ci_high: float | None
    relative: float | None  # (p_t − p_c) / p_c
    z: float | None
    p_value: float | None
    note: str = ""


def uplift_two_proportions(
    *,
    treatment_conversions: int,
    treatment_size: int,
    control_conversions: int,
    control_size: int,
    conversions_noise_sd: float = 0.0,
) -> Uplift:
    """The difference of two conversion rates with its 95 % interval, z and p-value.

    conversions_noise_sd: the standard deviation of noise added to each conversion count before it reached here
    (the release layer's); it widens the interval and the test, since the noise varies the rates as sampling does."""
    if not (0 <= treatment_conversions <= treatment_size and 0 <= control_conversions <= control_size):
        raise ValueError("conversions must be between 0 and the group size")
    p_t = treatment_conversions / treatment_size if treatment_size else None
    p_c = control_conversions / control_size if control_size else None
    if p_t is None or p_c is None:
        return Uplift(
            p_t, p_c, None, None, None, None, None, None, note="Uplift needs both a treatment and a control group."
        )
    diff = p_t - p_c
    noise = conversions_noise_sd**2 * (1 / treatment_size**2 + 1 / control_size**2)
    se = math.sqrt(p_t * (1 - p_t) / treatment_size + p_c * (1 - p_c) / control_size + noise)
    pooled = (treatment_conversions + control_conversions) / (treatment_size + control_size)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / treatment_size + 1 / control_size) + noise)
    if pooled_se > 0:
        z = diff / pooled_se
        p_value = math.erfc(abs(z) / math.sqrt(2))
    else:  # no conversions anywhere, or everyone converted: no evidence of a difference
        z, p_value = 0.0, 1.0
    return Uplift(
        treatment_rate=p_t,
        control_rate=p_c,
        absolute=diff,
        ci_low=diff - Z_95 * se,
        ci_high=diff + Z_95 * se,
        relative=diff / p_c if p_c > 0 else None,
        z=z,
        p_value=p_value,
    )
