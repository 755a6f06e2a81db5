from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tags.models import ConsumerTag, RunStatus, TaggingRun

from .conftest import AS_OF


def test_command_reports_progress_per_family(world, approve_activity):
    approve_activity("tagging")
    world.consumers(4, country="SG", age_range="25-34")
    out = StringIO()
    call_command(
        "compute_tags", "--family", "country", "--family", "age_range", "--as-of", AS_OF.isoformat(), stdout=out
    )
    text = out.getvalue()
    assert "country: computing" in text
    assert "country: 4 tags on 4 consumers" in text
    assert "age_range: 4 tags on 4 consumers" in text
    assert "done in" in text
    assert ConsumerTag.objects.count() == 8


def test_command_names_an_unknown_family(db, approve_activity):
    approve_activity("tagging")
    with pytest.raises(CommandError, match="'hobbies'"):
        call_command("compute_tags", "--family", "hobbies")


def test_command_rejects_a_bad_date(db):
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("compute_tags", "--as-of", "yesterday")


def test_command_refuses_without_a_basis(world):
    world.consumers(2, country="SG")
    with pytest.raises(CommandError, match="not permitted"):
        call_command("compute_tags", stdout=StringIO())
    assert not ConsumerTag.objects.exists()
    assert TaggingRun.objects.get().status == RunStatus.REFUSED
