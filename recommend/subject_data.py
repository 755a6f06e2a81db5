"""Data-subject requests for recommendations (layer 4).

What the recommender holds about a consumer is a row in stored model
artefacts: a latent factor vector (ALS, BPR) or a copy of their interaction
history (EASE, item-kNN). Recommendations themselves are computed on request
and not stored. Access lists the models holding a row; erasure rewrites those
artefacts without the row, and the new artefact version makes every process
drop its cached copy at its next request. Item similarities and item factors
are aggregates over all consumers and stay as they are until the next training
run, which no longer sees the erased consumer's events.
"""

from __future__ import annotations

from privacy.subject_data import SubjectDataHandler, register

from .selectors import consumer_model_presence
from .services import model_forget_consumer


def recommendations_access(consumer_id: int) -> dict:
    return {"recommender_models": consumer_model_presence(consumer_id)}


def recommendations_erase(consumer_id: int) -> dict[str, int]:
    return {"recommender_models": model_forget_consumer(consumer_id=consumer_id)}


register(
    SubjectDataHandler(name="recommendations", layer=4, access=recommendations_access, erase=recommendations_erase)
)
