"""Erasure across every layer, with the real tagging rules, bitmaps and segment snapshots.

Skips where the tags and segments layers are not present yet.
"""

import pytest

from consumers.models import EventType
from privacy.subject_rights import subject_request_process, subject_request_submit
from tests.privacy.rights_data import consumer_traces, make_consumer, make_event, make_product

pytest.importorskip("tags.services", reason="needs the tags layer")
pytest.importorskip("segments.services", reason="needs the segments layer")

RAW = "erased@example.test"


@pytest.fixture
def marketplace(merchant, other_merchant, all_purposes_approved):
    """150 consumers in Singapore, 120 in Malaysia; some bought outdoor gear; tagged and segmented."""
    from segments.services import segment_create, segment_refresh
    from tags.services import tags_compute

    tent = make_product(merchant, "tent", category="outdoor", category_path="outdoor/tents")
    singapore = [make_consumer(RAW, country="SG")] + [make_consumer(f"sg-{i}", country="SG") for i in range(149)]
    malaysia = [make_consumer(f"my-{i}", country="MY", age_range="35-44") for i in range(120)]
    for consumer in singapore[:60] + malaysia[:10]:
        make_event(consumer, merchant, EventType.VIEW, product=tent, days_ago=5)
        make_event(consumer, merchant, EventType.PURCHASE, product=tent, days_ago=4, order_ref="o1")
    tags_compute(actor="test")
    segments = {
        name: segment_create(merchant=merchant, name=name, actor="test", expression=expression)
        for name, expression in {
            "Singapore": "country:SG",
            "Malaysia": "country:MY",
            "Outdoor buyers": 'purchased(category="outdoor")',
            "SG adults": "country:SG AND age_range:25-34",
        }.items()
    }
    nested = segment_create(merchant=other_merchant, name="Everyone young", actor="test", expression="age_range:25-34")
    for segment in [*segments.values(), nested]:
        segment_refresh(segment_id=segment.pk, actor="test")
    return singapore[0], segments


def exact_estimate(merchant, expression: str) -> int:
    """What an officer sees: the exact size (merchants see it rounded to two significant figures)."""
    from segments.evaluation import evaluate_bitmap
    from segments.services import definition_compile

    return len(evaluate_bitmap(definition_compile(merchant=merchant, expression=expression)))


def latest_size(segment) -> int:
    from segments.selectors import segment_latest_snapshot

    return segment_latest_snapshot(segment_id=segment.pk).size


def test_estimates_and_segment_sizes_drop_by_exactly_one_where_the_consumer_was_a_member(
    marketplace, merchant, officer
):
    from segments.selectors import segment_latest_snapshot, snapshot_members
    from tags.models import Tag

    erased, segments = marketplace
    expressions = {
        "country:SG": 150,
        "country:MY": 120,
        'purchased(category="outdoor")': 70,
        "country:SG AND age_range:25-34": 150,
        "NOT country:SG": 120,
    }
    assert {e: exact_estimate(merchant, e) for e in expressions} == expressions
    sizes = {name: latest_size(segment) for name, segment in segments.items()}
    assert sizes == {"Singapore": 150, "Malaysia": 120, "Outdoor buyers": 70, "SG adults": 150}
    countries = dict(Tag.objects.filter(family="country").values_list("value", "consumer_count"))

    request = subject_request_submit(kind="erasure", raw_identifier=RAW, actor="apikey:1")
    done = subject_request_process(request_id=request.pk, officer=officer)
    removed = done.result["removed"]
    assert removed["tags"]["consumer_tags"] >= 2  # at least country and age range
    assert removed["segments"]["segment_snapshots"] == 4  # Singapore, Outdoor buyers, SG adults, Everyone young

    after = {e: exact_estimate(merchant, e) for e in expressions}
    assert after == {
        "country:SG": 149,
        "country:MY": 120,
        'purchased(category="outdoor")': 69,
        "country:SG AND age_range:25-34": 149,
        "NOT country:SG": 120,
    }
    assert {name: latest_size(segment) for name, segment in segments.items()} == {
        "Singapore": 149,
        "Malaysia": 120,
        "Outdoor buyers": 69,
        "SG adults": 149,
    }
    for segment in segments.values():
        assert erased.pk not in snapshot_members(segment_latest_snapshot(segment_id=segment.pk))
    after_countries = dict(Tag.objects.filter(family="country").values_list("value", "consumer_count"))
    assert after_countries == {**countries, "SG": countries["SG"] - 1}


def test_no_table_bitmap_or_snapshot_holds_the_erased_consumer(marketplace, merchant, other_merchant, officer):
    from tags.bitmaps import bitmap_cache_clear, bitmaps_load
    from tags.models import StoredBitmap

    erased, _ = marketplace
    ids = [merchant.pk, other_merchant.pk]
    assert consumer_traces(consumer_id=erased.pk, pseudonym=erased.pseudonym, raw_id=RAW, merchant_ids=ids)

    request = subject_request_submit(kind="erasure", raw_identifier=RAW, actor="apikey:1")
    subject_request_process(request_id=request.pk, officer=officer)

    assert consumer_traces(consumer_id=erased.pk, pseudonym=erased.pseudonym, raw_id=RAW, merchant_ids=ids) == []
    bitmap_cache_clear()
    stored = bitmaps_load(StoredBitmap.objects.values_list("key", flat=True))
    assert stored, "the tagging run stored bitmaps"
    assert all(erased.pk not in bitmap for bitmap in stored.values())


def test_erasure_takes_the_consumer_out_of_stored_recommender_models(
    marketplace, merchant, officer, settings, tmp_path, django_capture_on_commit_callbacks
):
    recommend_services = pytest.importorskip("recommend.services", reason="needs the recommend layer")
    from recommend.selectors import consumer_model_presence

    settings.MEDIA_ROOT = str(tmp_path / "media")
    erased, _ = marketplace
    config = recommend_services.training_config(algorithm="item_knn")
    recommend_services.recommender_train(config=config, actor="test", force=True)
    assert consumer_model_presence(erased.pk), "the erased consumer bought the tent, so the model holds their row"

    with django_capture_on_commit_callbacks(execute=True):
        request = subject_request_submit(kind="erasure", raw_identifier=RAW, actor="apikey:1")
        done = subject_request_process(request_id=request.pk, officer=officer)
    assert done.result["removed"]["recommendations"]["recommender_models"] >= 1
    assert consumer_model_presence(erased.pk) == []
