"""Advisory locks come from one registry that refuses collisions, and exclude other connections on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction

from dbtools.backend import on_postgresql
from dbtools.locks import CAMPAIGN_RUN, REGISTRY, TAGGING, LockCollision, LockRegistry


def test_the_registry_refuses_a_second_lock_with_the_same_name():
    registry = LockRegistry()
    registry.register("jobs.nightly", 1001)
    with pytest.raises(LockCollision, match="jobs.nightly"):
        registry.register("jobs.nightly", 1002)


def test_the_registry_refuses_a_second_lock_with_the_same_number():
    registry = LockRegistry()
    registry.register("jobs.nightly", 1001)
    with pytest.raises(LockCollision, match="1001 is already taken by 'jobs.nightly'"):
        registry.register("jobs.hourly", 1001)
    # Also across the one-key and two-key forms: one number, one meaning.
    with pytest.raises(LockCollision):
        registry.register("jobs.per_object", 1001, per_object=True)


def test_the_platform_registry_refuses_reusing_a_declared_lock():
    with pytest.raises(LockCollision):
        REGISTRY.register("tags.tagging", 1)
    with pytest.raises(LockCollision):
        REGISTRY.register("segments.new_job", TAGGING.key)
    names = [lock.name for lock in REGISTRY.locks()]
    assert names.count("tags.tagging") == 1 and "segments.new_job" not in names


def test_numbers_must_fit_the_key_form():
    registry = LockRegistry()
    with pytest.raises(ValueError, match="between 1 and"):
        registry.register("too.big", 2**31, per_object=True)
    with pytest.raises(ValueError, match="between 1 and"):
        registry.register("zero", 0)


def test_per_object_locks_need_an_object_and_others_refuse_one():
    with pytest.raises(ValueError, match="per object"):
        CAMPAIGN_RUN._args(None)
    with pytest.raises(ValueError, match="not per object"):
        TAGGING._args(5)


@pytest.mark.django_db
def test_without_postgresql_every_lock_is_granted():
    if on_postgresql():
        pytest.skip("SQLite behaviour")
    with TAGGING.held(), CAMPAIGN_RUN.try_held(3) as got:
        assert got
    with transaction.atomic():
        TAGGING.hold_for_transaction()


def _try_elsewhere(lock, object_id=None) -> bool:
    """Whether another connection could take the lock right now."""
    result = {}

    def attempt():
        try:
            with lock.try_held(object_id) as got:
                result["got"] = got
        finally:
            connections.close_all()

    worker = threading.Thread(target=attempt)
    worker.start()
    worker.join()
    return result["got"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_held_lock_excludes_other_connections_until_released():
    with TAGGING.held():
        assert not _try_elsewhere(TAGGING)
    assert _try_elsewhere(TAGGING)
    with CAMPAIGN_RUN.try_held(41) as got:
        assert got
        assert not _try_elsewhere(CAMPAIGN_RUN, 41)
        assert _try_elsewhere(CAMPAIGN_RUN, 42)  # another campaign's lock is free
    with transaction.atomic():
        TAGGING.hold_for_transaction()
        assert not _try_elsewhere(TAGGING)
    assert _try_elsewhere(TAGGING)  # released at commit
