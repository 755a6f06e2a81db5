"""Training, temporal validation, publication and banding of the predicted traits, end to end on SQLite."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from pyroaring import BitMap

from consumers.models import Consumer
from predict.families import FAMILIES, PREDICTIONS
from predict.models import ModelCard
from predict.services import UnknownPrediction, predictions_compute
from privacy.models import AuditEntry
from privacy.services import ProcessingNotPermitted
from segments.evaluation import definition_resolve, evaluate_bitmap, sql_condition
from segments.language import SegmentSyntaxError, parse, to_text
from tags.bitmaps import bitmap_load, tag_key
from tags.models import ConsumerTag, Tag, TaggingRun

from .conftest import AS_OF, marketplace


def test_planted_signal_every_model_beats_its_baseline_and_is_published(signal_world):
    report = predictions_compute(actor="test", as_of=AS_OF)

    cards = {card.family: card for card in ModelCard.objects.all()}
    assert set(cards) == set(FAMILIES)
    for family, card in cards.items():
        assert card.published, (family, card.reason)
        assert card.reason.startswith("Published")
        assert card.train_cutoff < card.validation_cutoff < card.as_of == AS_OF
        assert card.importance and card.calibration and card.features
        if card.kind == "classification":
            assert card.metrics["roc_auc"] >= card.baseline_metrics["roc_auc"] + 0.01
            assert {"roc_auc", "pr_auc", "brier"} <= set(card.metrics)
        else:
            assert card.metrics["mae"] < card.baseline_metrics["mae"]
        assert card.fairness, family  # every published band's spread, for officers
        assert report.published[family]

    # Bands by rank: about a tenth of the scored consumers in the top band, ties aside.
    counts = dict(Tag.objects.filter(family="purchase_propensity").values_list("value", "consumer_count"))
    scored = cards["purchase_propensity"].scored
    assert sum(counts.values()) == scored
    assert abs(counts["very_high"] - scored * 0.10) <= scored * 0.03
    # Per-store values are qualified by the store's slug.
    store_values = set(Tag.objects.filter(family="store_propensity").values_list("value", flat=True))
    assert {"store-0.very_high", "store-1.high"} <= store_values
    # No individual score is stored: the bands are the only trace of a prediction.
    assert not ConsumerTag.objects.filter(tag__family__in=FAMILIES, score__isnull=False).exists()
    # Bitmaps match the rows.
    for tag in Tag.objects.filter(family__in=FAMILIES):
        assert len(bitmap_load(tag_key(tag.pk))) == tag.consumer_count
    audit = AuditEntry.objects.get(action="predict.computed")
    assert audit.purpose == "tagging" and audit.counts["purchase_propensity"] == scored


def test_the_segment_language_accepts_the_predicted_families(signal_world):
    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity", "store_propensity"])
    merchant = signal_world["merchants"][0]
    text = "purchase_propensity:very_high AND NOT store_propensity:store-0.very_high OR store_propensity:store-0.high"
    tree = parse(text)
    assert to_text(parse(to_text(tree))) == to_text(tree)
    resolved = definition_resolve(tree, merchant=merchant, text=text)
    members = evaluate_bitmap(resolved, now=AS_OF)

    def holders(family, value):
        rows = ConsumerTag.objects.filter(tag__family=family, tag__value=value)
        return BitMap(rows.values_list("consumer_id", flat=True))

    expected = (
        holders("purchase_propensity", "very_high") - holders("store_propensity", "store-0.very_high")
    ) | holders("store_propensity", "store-0.high")
    assert members == expected and len(members) > 0
    # The SQL oracle agrees.
    from consumers.models import Consumer

    assert BitMap(Consumer.objects.filter(sql_condition(resolved, now=AS_OF)).values_list("id", flat=True)) == members

    # Another store's propensity is that store's alone: unknown to this merchant, like a missing value.
    other = "store_propensity:store-1.high"
    with pytest.raises(SegmentSyntaxError, match="Unknown value 'store-1.high'") as refused:
        definition_resolve(parse(other), merchant=merchant, text=other)
    assert all(value.startswith("store-0.") for value in refused.value.expected)
    definition_resolve(parse(other), merchant=signal_world["merchants"][1], text=other)


def test_no_signal_no_publication_with_the_reason(noise_world):
    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity", "churn_risk", "predicted_value"])

    for card in ModelCard.objects.all():
        assert not card.published, (card.family, card.metrics, card.baseline_metrics)
        assert card.reason.startswith("Not published:")
        assert "baseline" in card.reason or "too little data" in card.reason
        assert card.fairness == {} and card.scored == 0
    # An unvalidated model's family is held by nobody.
    assert set(Tag.objects.filter(family="purchase_propensity").values_list("consumer_count", flat=True)) == {0}
    assert not ConsumerTag.objects.filter(tag__family__in=FAMILIES).exists()


def test_without_an_approved_tagging_basis_nothing_is_trained(db):
    marketplace(consumers=60)
    with pytest.raises(ProcessingNotPermitted):
        predictions_compute(actor="test", as_of=AS_OF)
    assert not ModelCard.objects.exists() and not TaggingRun.objects.exists()


def test_an_unknown_family_is_refused_before_anything_runs(db, approve_activity):
    approve_activity("tagging")
    with pytest.raises(UnknownPrediction, match="lifetime_value"):
        predictions_compute(actor="test", families=["lifetime_value"])
    assert not TaggingRun.objects.exists()


def test_every_family_has_a_plain_definition_per_band():
    from predict.families import band_values

    for prediction in PREDICTIONS.values():
        values = band_values(prediction, [("acme", "Acme")])
        assert values and all(v.definition.endswith(".") and len(v.definition) > 30 for v in values)


def test_the_task_records_a_refusal_where_tagging_runs_are_looked_at(db):
    from predict.tasks import predictions_compute_task

    result = predictions_compute_task.delay().get()
    assert result["status"] == "refused"
    run = TaggingRun.objects.get()
    assert run.status == "refused" and run.actor == "task:predict.compute"


def test_the_command_rejects_a_bad_date(db):
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("compute_predictions", "--as-of", "yesterday")


def test_the_command_records_a_refusal_where_tagging_runs_are_looked_at(db):
    with pytest.raises(CommandError, match="not permitted"):
        call_command("compute_predictions", "--as-of", "2025-06-01T12:00:00", stdout=StringIO())
    run = TaggingRun.objects.get()
    assert run.status == "refused" and run.actor == "command:compute_predictions"


def test_the_nightly_schedule_runs_after_tagging(db):
    from django_celery_beat.models import PeriodicTask

    nightly = PeriodicTask.objects.get(name="Nightly predicted traits")
    assert nightly.task == "predict.compute" and nightly.enabled
    assert (nightly.crontab.hour, nightly.crontab.minute) == ("2", "15")


def test_segment_insights_show_a_store_only_its_own_propensity(signal_world):
    from segments.insights import segment_insights
    from tests.factories import SegmentFactory

    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity", "store_propensity"])
    store = signal_world["merchants"][0]
    everyone = " OR ".join(f"purchase_propensity:{band}" for band in ("very_high", "high", "medium", "low"))
    segment = SegmentFactory(merchant=store, expression=everyone, refresh=True)
    insights = segment_insights(segment=segment, merchant_id=store.pk)
    values = [v["value"] for f in insights["families"] if f["family"] == "store_propensity" for v in f["values"]]
    assert values and all(value.startswith("store-0.") for value in values), insights


def test_a_consumer_holds_store_bands_only_for_their_most_visited_stores(signal_world, settings):
    # Both stores are every consumer's candidates by default; with one candidate each, nobody holds a band of both.
    def stores_held() -> dict[int, set[str]]:
        held: dict[int, set[str]] = {}
        for consumer, value in ConsumerTag.objects.filter(tag__family="store_propensity").values_list(
            "consumer_id", "tag__value"
        ):
            held.setdefault(consumer, set()).add(value.split(".")[0])
        return held

    predictions_compute(actor="test", as_of=AS_OF, families=["store_propensity"])
    assert any(len(stores) == 2 for stores in stores_held().values())
    # The definition a merchant reads says who the store's candidates are.
    definition = Tag.objects.get(family="store_propensity", value="store-0.very_high").definition
    assert "consumers for whom Store 0 is one of their 5 most-visited stores of the last 180 days" in definition
    settings.PREDICT_STORE_CANDIDATES = 1
    predictions_compute(actor="test", as_of=AS_OF, families=["store_propensity"])
    held = stores_held()
    assert held and all(len(stores) == 1 for stores in held.values())
    card = ModelCard.objects.filter(family="store_propensity").latest("trained_at")
    assert card.published
    assert card.scored <= Consumer.objects.count()  # one (consumer, store) pair at most per consumer


def test_with_recommender_factors_on_the_cards_list_them_and_rank_them(signal_world, settings):
    settings.PREDICT_FACTORS = 4
    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity", "category_propensity"])
    for family in ("purchase_propensity", "category_propensity"):
        card = ModelCard.objects.get(family=family)
        factors = {"factor_1", "factor_2", "factor_3", "factor_4"}
        assert factors <= set(card.features), family
        assert factors <= {row["feature"] for row in card.importance}, family
    assert "pair_factor_affinity" in ModelCard.objects.get(family="category_propensity").features
    settings.PREDICT_FACTORS = 0
    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity"])
    latest = ModelCard.objects.filter(family="purchase_propensity").latest("trained_at")
    assert not [name for name in latest.features if name.startswith("factor_")]
