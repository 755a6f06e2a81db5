"""After the upgrade to E.164 phone pseudonyms, the consumers held under the old ones can be retired: their
direct-marketing opt-in is withdrawn, since nothing that arrives can reach them any more."""

from __future__ import annotations

import io
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from consumers.models import Consumer
from privacy.models import AuditEntry, ConsentKind, ConsentStatus, Purpose
from privacy.pseudonyms import legacy_pseudonymise, pseudonymise
from privacy.selectors import direct_marketing_opt_in_consumer_ids
from privacy.services import ConsentChange, consents_record


def opted_in(pseudonym: str) -> Consumer:
    consumer = Consumer.objects.create(pseudonym=pseudonym)
    when = timezone.now() - timedelta(days=30)
    change = ConsentChange(
        consumer.pk, Purpose.DIRECT_MARKETING, ConsentStatus.GRANTED, ConsentKind.EXPRESS, "app", when
    )
    consents_record(changes=[change], actor="test")
    return consumer


def test_old_phone_pseudonyms_lose_their_opt_in_and_nothing_else_does(db, tmp_path):
    old = opted_in(legacy_pseudonymise("65 9000 1234"))  # the digits-only rule made "6590001234"
    assert old.pseudonym != pseudonymise("65 9000 1234")
    same = opted_in(pseudonymise("+65 8000 0001"))  # written with "+", the old rule already gave the new pseudonym
    assert legacy_pseudonymise("+65 8000 0001") == same.pseudonym
    mail = opted_in(pseudonymise("erin@example.test"))
    assert set(direct_marketing_opt_in_consumer_ids()) == {old.pk, same.pk, mail.pk}

    listing = tmp_path / "phones.txt"
    listing.write_text("65 9000 1234\n+65 8000 0001\nerin@example.test\n0065 8111 2222\n\n")
    out = io.StringIO()
    call_command("retire_legacy_phone_pseudonyms", str(listing), stdout=out)

    assert out.getvalue().strip() == "read=4 phone_numbers=3 unchanged=1 not_held=1 withdrawn=1"
    assert set(direct_marketing_opt_in_consumer_ids()) == {same.pk, mail.pk}
    entry = AuditEntry.objects.get(action="pseudonyms.legacy_phones_retired")
    assert entry.counts["withdrawn"] == 1
    written = str(list(AuditEntry.objects.values("actor", "object_id", "counts", "details")))
    assert "9000" not in written and "8111" not in written
