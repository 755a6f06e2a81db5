"""Reads: the latest model card of each predicted family, and the plain-words summary merchants see."""

from __future__ import annotations

from .families import PREDICTIONS
from .models import ModelCard


def latest_cards() -> dict[str, ModelCard]:
    """The most recent card of each predicted family (published or not)."""
    cards: dict[str, ModelCard] = {}
    for card in ModelCard.objects.order_by("family", "-trained_at", "-id").distinct():
        cards.setdefault(card.family, card)
    return cards


def card_summary(card: ModelCard | None) -> str:
    """What a merchant reads under the family in the tag explorer: about the model, never about anyone.

    Metrics describe the model on held-out data; no count or score of any consumer appears here.
    """
    if card is None:
        return "No model has been trained yet, so nobody holds these tags."
    when = f"{card.trained_at:%d %b %Y}"
    if not card.published:
        return (
            f"Not in use: the model trained on {when} did not predict better than a simple recency-and-frequency "
            "rule on recent data it had not seen, so nobody holds these tags until a better one is trained."
        )
    horizon = f"{card.horizon_days:g} days"
    if card.kind == "classification":
        auc, base = card.metrics.get("roc_auc"), card.baseline_metrics.get("roc_auc")
        quality = (
            f"On recent data it had not seen, it ranked a consumer who went on to act above one who did not "
            f"{auc:.0%} of the time (a simple recency-and-frequency rule: {base:.0%})."
            if auc is not None and base is not None
            else ""
        )
    else:
        quality = (
            "On recent data it had not seen, its predictions were closer to what happened than a simple rule's "
            f"(average error {card.metrics.get('mae', 0):.2f} against {card.baseline_metrics.get('mae', 0):.2f})."
        )
    return (
        f"Predicted by a model trained on {when} from behaviour before a cut-off and checked on the following "
        f"{horizon}. {quality} Bands are refreshed with the nightly tags; no individual score is kept or shown."
    ).strip()


def family_note(family: str) -> str:
    if family not in PREDICTIONS:
        return ""
    card = ModelCard.objects.filter(family=family).order_by("-trained_at", "-id").first()
    return card_summary(card)
