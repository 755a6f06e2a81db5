"""Indexes for the bitmaps that are brought up to date on read (tags.live_bitmap, tags.consent_bitmap).

Both tables belong to layers below tags, so the indexes are created here with
raw SQL, by name, leaving those apps' model state untouched; reversing drops them.
An early version of 0002 indexed privacy_consentstate (purpose, updated_at) instead
of the consent ledger; that index is dropped where it exists.
"""

from django.db import migrations

CONSUMER_CREATED = "tags_consumer_created_idx"
CONSENT_RECORDED = "tags_consentrecord_purpose_recorded_idx"
OLD_CONSENT_STATE = "tags_consentstate_purpose_updated_idx"


class Migration(migrations.Migration):
    dependencies = [
        ("tags", "0002_lean_tag_rows_runs_and_nightly_schedule"),
        ("consumers", "0001_initial"),
        ("privacy", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {CONSUMER_CREATED} ON consumers_consumer (created_at)",
            reverse_sql=f"DROP INDEX IF EXISTS {CONSUMER_CREATED}",
        ),
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {CONSENT_RECORDED} ON privacy_consentrecord (purpose, recorded_at)",
            reverse_sql=migrations.RunSQL.noop,  # 0002 created it on fresh databases; its reversal drops it
        ),
        migrations.RunSQL(sql=f"DROP INDEX IF EXISTS {OLD_CONSENT_STATE}", reverse_sql=migrations.RunSQL.noop),
    ]
