"""Tagging runs: the basis check, atomic family replacement, bitmaps that match the rows, the audit entry."""

from __future__ import annotations

import json

import pytest

from consumers.models import Consumer, EventType
from privacy.models import AuditEntry, ProcessingActivity
from privacy.services import ProcessingNotPermitted, activity_suspend
from tags import services
from tags.bitmaps import LIVE_CONSUMERS_KEY, bitmap_load, tag_key
from tags.models import ConsumerTag, RunStatus, StoredBitmap, Tag, TaggingRun
from tags.rules import RULES, UnknownFamily
from tags.services import tags_compute

from .conftest import AS_OF


def family_rows(family: str) -> set[tuple[int, str]]:
    return set(ConsumerTag.objects.filter(tag__family=family).values_list("consumer_id", "tag__value").iterator())


def populate(world, n: int = 30) -> list[Consumer]:
    consumers = world.consumers(n, age_range="25-34", country="SG")
    sports = world.product(category="Sports", brand="Acme")
    rows = []
    for i, consumer in enumerate(consumers):
        for d in range(i % 6 + 1):
            rows.append((consumer, EventType.VIEW, d * 7, sports, None, None, 1, "0", ""))
        if i % 2:
            rows.append((consumer, EventType.PURCHASE, i, sports, None, None, 1, "1" if i % 3 else "0", f"o-{i}"))
    world.events(rows)
    return consumers


def test_refuses_without_an_approved_tagging_activity_and_writes_nothing(world):
    populate(world)
    audit_before = AuditEntry.objects.count()
    with pytest.raises(ProcessingNotPermitted) as exc:
        tags_compute(actor="test", as_of=AS_OF)
    assert exc.value.purpose == "tagging"
    assert not Tag.objects.exists()
    assert not ConsumerTag.objects.exists()
    assert not StoredBitmap.objects.exists()
    assert not TaggingRun.objects.exists()
    assert AuditEntry.objects.count() == audit_before


def test_refuses_once_the_activity_is_suspended_and_leaves_the_tags_as_they_were(world, approve_activity, officer):
    populate(world)
    activity = approve_activity("tagging")
    tags_compute(actor="test", as_of=AS_OF)
    before = family_rows("country")
    runs = TaggingRun.objects.count()
    activity_suspend(activity=activity, officer=officer)
    world.consumer(country="GB")
    with pytest.raises(ProcessingNotPermitted):
        tags_compute(actor="test", as_of=AS_OF)
    assert family_rows("country") == before
    assert TaggingRun.objects.count() == runs


def test_unknown_family_is_named_and_nothing_is_written(world, approve_activity):
    approve_activity("tagging")
    with pytest.raises(UnknownFamily, match="'hobbies'"):
        tags_compute(families=["country", "hobbies"], actor="test")
    assert not TaggingRun.objects.exists() and not Tag.objects.exists()


def test_bitmaps_equal_the_rows_for_every_tag(world, approve_activity):
    populate(world, 60)
    approve_activity("tagging")
    report = tags_compute(actor="test", as_of=AS_OF)
    assert {f.family for f in report.families} == set(RULES)
    assert ConsumerTag.objects.exists()
    for tag in Tag.objects.all():
        members = set(ConsumerTag.objects.filter(tag=tag).values_list("consumer_id", flat=True))
        assert set(bitmap_load(tag_key(tag.pk))) == members, tag.code
        assert tag.consumer_count == len(members), tag.code
    assert set(bitmap_load(LIVE_CONSUMERS_KEY)) == set(Consumer.objects.values_list("id", flat=True))
    assert report.live_consumers == 60


def test_a_run_replaces_the_family_and_keeps_vanished_values_with_no_members(world, approve_activity):
    approve_activity("tagging")
    sg = world.consumers(3, country="SG")
    gb = world.consumer(country="GB")
    tags_compute(families=["country"], actor="test", as_of=AS_OF)
    assert family_rows("country") == {(c.pk, "SG") for c in sg} | {(gb.pk, "GB")}
    Consumer.objects.filter(pk=gb.pk).update(country="SG")
    tags_compute(families=["country"], actor="test", as_of=AS_OF)
    assert family_rows("country") == {(c.pk, "SG") for c in [*sg, gb]}
    gb_tag = Tag.objects.get(family="country", value="GB")
    assert gb_tag.consumer_count == 0
    assert len(bitmap_load(tag_key(gb_tag.pk))) == 0
    assert Tag.objects.get(family="country", value="SG").consumer_count == 4


def test_a_failure_mid_family_leaves_the_previous_family_intact(world, approve_activity, monkeypatch):
    approve_activity("tagging")
    consumers = world.consumers(5, country="SG")
    tags_compute(families=["country"], actor="test", as_of=AS_OF)
    rows_before = family_rows("country")
    sg = Tag.objects.get(family="country", value="SG")
    bitmap_before = set(bitmap_load(tag_key(sg.pk)))
    version_before = StoredBitmap.objects.get(key=tag_key(sg.pk)).version

    Consumer.objects.filter(pk__in=[c.pk for c in consumers[:2]]).update(country="FR")
    stored = []

    def failing_store(*, key, bitmap, source_mark=None):
        # Rows are already deleted and re-inserted when the bitmaps are stored: fail half-way through those.
        stored.append(key)
        if len(stored) == 2:
            raise RuntimeError("disk full")
        return original_store(key=key, bitmap=bitmap, source_mark=source_mark)

    original_store = services.bitmap_store
    monkeypatch.setattr(services, "bitmap_store", failing_store)
    with pytest.raises(RuntimeError, match="disk full"):
        tags_compute(families=["country"], actor="test", as_of=AS_OF)

    assert family_rows("country") == rows_before
    assert not Tag.objects.filter(family="country", value="FR").exists()
    sg.refresh_from_db()
    assert sg.consumer_count == 5
    assert set(bitmap_load(tag_key(sg.pk))) == bitmap_before
    assert StoredBitmap.objects.get(key=tag_key(sg.pk)).version == version_before
    run = TaggingRun.objects.latest("id")
    assert run.status == RunStatus.FAILED
    assert "disk full" in run.error


def test_families_replaced_before_a_failure_stay_replaced_and_are_audited(world, approve_activity, monkeypatch):
    approve_activity("tagging")
    world.consumers(5, country="SG", age_range="18-24")

    def broken(self, data):
        raise ValueError("rule bug")

    monkeypatch.setattr(type(RULES["country"]), "compute", broken)
    with pytest.raises(ValueError):
        tags_compute(families=["age_range", "country"], actor="test", as_of=AS_OF)
    assert len(family_rows("age_range")) == 5
    assert not family_rows("country")
    entry = AuditEntry.objects.filter(action="tags.compute_failed").get()
    assert entry.counts["age_range"] == 5 and "country" not in entry.counts


def test_one_audit_entry_with_counts_per_family_and_the_basis(world, approve_activity):
    consumers = populate(world)
    activity: ProcessingActivity = approve_activity("tagging")
    report = tags_compute(families=["country", "lifecycle"], actor="command:compute_tags", as_of=AS_OF)
    entries = AuditEntry.objects.filter(action="tags.computed")
    assert entries.count() == 1
    entry = entries.get()
    assert entry.actor == "command:compute_tags"
    assert entry.purpose == "tagging"
    assert entry.legal_basis == activity.legal_basis
    assert entry.activity_id == activity.pk
    assert entry.counts["country"] == 30 and entry.counts["lifecycle"] == 30
    assert entry.counts["live_consumers"] == 30
    assert entry.object_id == str(report.run_id)
    text = json.dumps([entry.counts, entry.details])
    assert not any(c.pseudonym in text for c in consumers)


def test_recomputing_is_idempotent(world, approve_activity):
    populate(world, 40)
    approve_activity("tagging")
    tags_compute(actor="test", as_of=AS_OF)
    first = set(ConsumerTag.objects.values_list("consumer_id", "tag_id", "score"))
    tags_compute(actor="test", as_of=AS_OF)
    assert set(ConsumerTag.objects.values_list("consumer_id", "tag_id", "score")) == first
    run = TaggingRun.objects.latest("id")
    assert run.status == RunStatus.SUCCEEDED
    assert run.counts["country"]["assigned"] == 40


def test_a_consumer_deleted_while_the_run_computes_keeps_no_tags(world, approve_activity, monkeypatch):
    approve_activity("tagging")
    consumers = world.consumers(4, country="SG", age_range="25-34")
    doomed = consumers[0]
    rule_class = type(RULES["age_range"])
    original = rule_class.compute

    def compute_then_delete(self, data):
        result = original(self, data)
        Consumer.objects.filter(pk=doomed.pk).delete()  # e.g. an erasure landing mid-run
        return result

    monkeypatch.setattr(rule_class, "compute", compute_then_delete)
    tags_compute(families=["country", "age_range"], actor="test", as_of=AS_OF)
    assert not ConsumerTag.objects.filter(consumer_id=doomed.pk).exists()
    for tag in Tag.objects.all():
        assert doomed.pk not in bitmap_load(tag_key(tag.pk))
        assert tag.consumer_count == ConsumerTag.objects.filter(tag=tag).count()
    assert doomed.pk not in bitmap_load(LIVE_CONSUMERS_KEY)


def test_the_catalogue_carries_definitions_rule_version_and_purpose(world, approve_activity):
    approve_activity("tagging")
    world.consumer(country="SG")
    tags_compute(families=["country"], actor="test", as_of=AS_OF)
    tag = Tag.objects.get(family="country", value="SG")
    assert tag.label == "Singapore"
    assert "Singapore (SG)" in tag.definition
    assert tag.rule_version == RULES["country"].rule_version
    assert tag.purpose == "tagging"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_families_are_read_and_written_on_other_connections(world, approve_activity):
    """The production path: page ranges read on two connections, families written by a background writer."""
    populate(world, 50)
    approve_activity("tagging")
    report = tags_compute(actor="test", as_of=AS_OF)
    assert [f.family for f in report.families] == list(RULES)
    for tag in Tag.objects.all():
        members = set(ConsumerTag.objects.filter(tag=tag).values_list("consumer_id", flat=True))
        assert set(bitmap_load(tag_key(tag.pk))) == members, tag.code
        assert tag.consumer_count == len(members)
    assert TaggingRun.objects.get().status == RunStatus.SUCCEEDED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_background_write_failure_fails_the_run_and_keeps_earlier_families(world, approve_activity, monkeypatch):
    world.consumers(5, country="SG", age_range="25-34")
    approve_activity("tagging")
    original = services.family_replace

    def failing(*, rule, **kwargs):
        if rule.family == "country":
            raise RuntimeError("connection lost")
        return original(rule=rule, **kwargs)

    monkeypatch.setattr(services, "family_replace", failing)
    with pytest.raises(RuntimeError, match="connection lost"):
        tags_compute(families=["age_range", "country", "lifecycle"], actor="test", as_of=AS_OF)
    assert len(family_rows("age_range")) == 5
    assert not family_rows("country")
    run = TaggingRun.objects.get()
    assert run.status == RunStatus.FAILED and "connection lost" in run.error
    assert list(run.counts) == ["age_range"]


def test_a_rerun_rewrites_only_what_changed(world, approve_activity):
    from consumers.models import Event

    approve_activity("tagging")
    product = world.product(category="Sports")
    *steady, changing, leaving = world.consumers(7)
    for consumer in (*steady, changing, leaving):
        for n in range(4):
            world.purchase(consumer, product, days_ago=n + 1, order=f"{consumer.pk}-{n}", discount="0")
    tags_compute(families=["discount_sensitivity"], actor="test", as_of=AS_OF)
    first = {r.consumer_id: r for r in ConsumerTag.objects.filter(tag__family="discount_sensitivity")}
    assert {r.tag.value for r in first.values()} == {"low"} and len(first) == 7

    for n in range(4):  # `changing` now buys as much on discount as not: a new value and a new score
        world.purchase(changing, product, days_ago=0.5, order=f"{changing.pk}-d{n}", discount="1.00")
    Event.objects.filter(consumer=leaving).delete()
    tags_compute(families=["discount_sensitivity"], actor="test", as_of=AS_OF)
    second = {r.consumer_id: r for r in ConsumerTag.objects.filter(tag__family="discount_sensitivity")}
    assert {c: r.tag.value for c, r in second.items()} == {**{c.pk: "low" for c in steady}, changing.pk: "high"}
    assert second[changing.pk].score == 0.5
    for consumer in steady:  # untouched rows keep their identity and the date they were first tagged
        assert second[consumer.pk].pk == first[consumer.pk].pk
        assert second[consumer.pk].assigned_at == first[consumer.pk].assigned_at
    for tag in Tag.objects.filter(family="discount_sensitivity"):
        members = set(ConsumerTag.objects.filter(tag=tag).values_list("consumer_id", flat=True))
        assert set(bitmap_load(tag_key(tag.pk))) == members
        assert tag.consumer_count == len(members)


def test_a_run_left_running_by_a_dead_process_is_marked_abandoned(world, approve_activity):
    from django.utils import timezone

    approve_activity("tagging")
    world.consumer(country="SG")
    dead = TaggingRun.objects.create(actor="task:tags.compute", started_at=timezone.now())
    tags_compute(families=["country"], actor="test", as_of=AS_OF)
    dead.refresh_from_db()
    assert dead.status == RunStatus.FAILED and "Abandoned" in dead.error
    assert TaggingRun.objects.exclude(pk=dead.pk).get().status == RunStatus.SUCCEEDED


def test_given_rules_go_through_the_same_pipeline_as_the_catalogue(world, approve_activity):
    """tags_compute(rules=...) (what test data and one-off backfills use) writes like a real run: rows, counts,
    bitmaps, the live and consent bitmaps, a recorded run and one audit entry."""
    from tests.factories import GivenRule

    approve_activity("tagging")
    consumers = world.consumers(3)
    rule = GivenRule("interest", {"sports": [consumers[0].pk, consumers[2].pk]}, values=["books"])
    report = tags_compute(rules=[rule], actor="test")
    sports = Tag.objects.get(family="interest", value="sports")
    assert family_rows("interest") == {(consumers[0].pk, "sports"), (consumers[2].pk, "sports")}
    assert sports.consumer_count == 2 and Tag.objects.get(family="interest", value="books").consumer_count == 0
    assert set(bitmap_load(tag_key(sports.pk))) == {consumers[0].pk, consumers[2].pk}
    assert set(bitmap_load(LIVE_CONSUMERS_KEY)) >= {c.pk for c in consumers}
    run = TaggingRun.objects.get(pk=report.run_id)
    assert run.status == RunStatus.SUCCEEDED and run.families == ["interest"]
    assert AuditEntry.objects.filter(action="tags.computed", object_id=str(run.pk)).count() == 1
