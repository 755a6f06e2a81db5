"""Predicted traits (propensity, churn, value, next order) trained with temporal validation and published as tags."""
