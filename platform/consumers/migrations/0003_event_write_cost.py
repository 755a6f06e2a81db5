"""Cheaper event writes on PostgreSQL: two foreign-key checks off, and a BRIN index for time windows.

- Event.merchant and Event.product no longer have database constraints (db_constraint=False): the
  ingestion service resolves both ids itself and Django carries out CASCADE / SET_NULL in Python.
  Event.consumer keeps its constraint (erasure safety; see docs/ingestion.md).
- The single-column occurred_at index becomes a BRIN index on PostgreSQL. The queries that use it
  (retention's "older than", the tagging, risk and segment windows) read contiguous time ranges of an
  append-mostly table, which BRIN serves at almost no cost per written row; a B-tree costs every row.
  Other databases keep the B-tree (the model's Index; BRIN is PostgreSQL's).
"""

import django.db.models.deletion
from django.db import migrations, models

from dbtools.backend import on_postgresql

OCCURRED_AT_INDEX = "consumers_e_occurre_924db7_idx"


def occurred_at_brin(apps, schema_editor):
    if not on_postgresql(schema_editor.connection):
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {OCCURRED_AT_INDEX}")
    schema_editor.execute(
        f"CREATE INDEX {OCCURRED_AT_INDEX} ON consumers_event USING brin (occurred_at) WITH (autosummarize = on)"
    )


def occurred_at_btree(apps, schema_editor):
    if not on_postgresql(schema_editor.connection):
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {OCCURRED_AT_INDEX}")
    schema_editor.execute(f"CREATE INDEX {OCCURRED_AT_INDEX} ON consumers_event (occurred_at)")


class Migration(migrations.Migration):
    dependencies = [
        ("consumers", "0002_event_index_diet"),
        ("merchants", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="merchant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="merchants.merchant",
            ),
        ),
        migrations.AlterField(
            model_name="event",
            name="product",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="events",
                to="consumers.product",
            ),
        ),
        migrations.RunPython(occurred_at_brin, occurred_at_btree, elidable=False),
    ]
