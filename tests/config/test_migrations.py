"""The migration graph is whole: one leaf per app and no model change without its migration.

Two branches that each add a migration with the same number merge cleanly in git but leave Django with two leaf
nodes, and every `migrate` (the image's, the quick start's) then refuses to run.
"""

from io import StringIO

from django.core.management import call_command


def test_no_conflicting_or_missing_migrations(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()
