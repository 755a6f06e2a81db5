"""The processing register, the consent ledger and the audit log."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class Purpose(models.TextChoices):
    TAGGING = "tagging", "Tagging and audience insights"
    RECOMMENDATION = "recommendation", "Product recommendations"
    DIRECT_MARKETING = "direct_marketing", "Direct marketing (campaign sends, audience export)"
    RISK_CONTROL = "risk_control", "Risk control (fraud and coupon-abuse flags)"


class LegalBasis(models.TextChoices):
    CONSENT = "consent", "Consent (express opt-in)"
    DEEMED_CONSENT = "deemed_consent_notification", "Deemed consent by notification"
    BUSINESS_IMPROVEMENT = "business_improvement", "Business Improvement Exception"
    LEGITIMATE_INTERESTS = "legitimate_interests", "Legitimate Interests Exception"


# Which bases may support which purpose (PDPA as amended 2020; GDPR equivalent in docs/privacy.md).
ALLOWED_BASES: dict[str, frozenset[str]] = {
    Purpose.TAGGING: frozenset({LegalBasis.BUSINESS_IMPROVEMENT, LegalBasis.CONSENT}),
    Purpose.RECOMMENDATION: frozenset({LegalBasis.BUSINESS_IMPROVEMENT, LegalBasis.CONSENT}),
    Purpose.DIRECT_MARKETING: frozenset({LegalBasis.CONSENT}),
    Purpose.RISK_CONTROL: frozenset({LegalBasis.LEGITIMATE_INTERESTS}),
}


class ActivityStatus(models.TextChoices):
    DRAFT = "draft", "Draft (awaiting approval)"
    APPROVED = "approved", "Approved"
    SUSPENDED = "suspended", "Suspended"


class ProcessingActivity(models.Model):
    """One purpose, the legal basis it relies on, its written assessment, and who approved it."""

    name = models.CharField(max_length=200)
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    legal_basis = models.CharField(max_length=40, choices=LegalBasis.choices)
    description = models.TextField(help_text="What is processed and why, in plain language.")
    assessment = models.TextField(
        blank=True,
        help_text="The written assessment. Business Improvement: why the purpose cannot reasonably be achieved "
        "without identifiable data and why a reasonable person would consider it appropriate. Legitimate "
        "Interests: the balancing test (benefit against adverse effect on consumers) and the mitigations.",
    )
    disclosure_url = models.URLField(
        blank=True, help_text="Public notice of reliance on the Legitimate Interests Exception."
    )
    counter_statement_channel = models.CharField(
        max_length=300, blank=True, help_text="How adversely affected consumers can file a counter statement."
    )
    data_categories = models.CharField(max_length=500, blank=True, help_text="Comma-separated data categories.")
    recipients = models.CharField(max_length=500, blank=True, help_text="Who receives the output.")
    retention = models.CharField(max_length=200, blank=True)
    safeguards = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=ActivityStatus.choices, default=ActivityStatus.DRAFT)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["purpose", "name"]
        verbose_name = "processing activity"
        verbose_name_plural = "processing register"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_purpose_display()}, {self.get_legal_basis_display()})"

    def clean(self) -> None:
        errors = rule_violations(
            purpose=self.purpose,
            legal_basis=self.legal_basis,
            assessment=self.assessment,
            disclosure_url=self.disclosure_url,
            counter_statement_channel=self.counter_statement_channel,
        )
        if errors:
            raise ValidationError(errors)


def rule_violations(
    *, purpose: str, legal_basis: str, assessment: str, disclosure_url: str, counter_statement_channel: str
) -> dict[str, list[str]]:
    """The register's rules as field errors; empty when the activity is lawful as written."""
    errors: dict[str, list[str]] = {}
    allowed = ALLOWED_BASES.get(purpose)
    if allowed is None:
        return {"purpose": [f"Unknown purpose {purpose!r}."]}
    if legal_basis not in allowed:
        names = ", ".join(sorted(LegalBasis(b).label for b in allowed))
        if purpose == Purpose.DIRECT_MARKETING:
            reason = (
                "Direct marketing needs each consumer's express opt-in consent; the Business Improvement "
                "Exception, the Legitimate Interests Exception and deemed consent by notification never cover it."
            )
        else:
            reason = f"{Purpose(purpose).label} may rely only on: {names}."
        errors.setdefault("legal_basis", []).append(reason)
    if legal_basis in (LegalBasis.BUSINESS_IMPROVEMENT, LegalBasis.LEGITIMATE_INTERESTS) and not assessment.strip():
        errors.setdefault("assessment", []).append(
            f"{LegalBasis(legal_basis).label} needs a written assessment before it can be relied on."
        )
    if legal_basis == LegalBasis.LEGITIMATE_INTERESTS:
        if not disclosure_url.strip():
            errors.setdefault("disclosure_url", []).append(
                "The Legitimate Interests Exception needs a public disclosure of the reliance (a URL)."
            )
        if not counter_statement_channel.strip():
            errors.setdefault("counter_statement_channel", []).append(
                "Risk control under Legitimate Interests needs a counter-statement channel for affected consumers."
            )
    return errors


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Granted"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ConsentKind(models.TextChoices):
    EXPRESS = "express", "Express opt-in"
    DEEMED = "deemed", "Deemed (by conduct or notification)"


class ConsentRecord(models.Model):
    """The consent ledger: one row per consent event, never changed (append-only)."""

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.CASCADE, related_name="consent_records")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    kind = models.CharField(max_length=16, choices=ConsentKind.choices, default=ConsentKind.EXPRESS)
    source = models.CharField(max_length=100, help_text="Where it was captured (app screen, form version).")
    occurred_at = models.DateTimeField(help_text="When the consumer gave or withdrew it.")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["consumer", "purpose", "occurred_at"])]

    def __str__(self) -> str:
        return f"consumer {self.consumer_id} {self.purpose} {self.status} ({self.kind})"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("The consent ledger is append-only; record a new entry instead.")
        super().save(*args, **kwargs)


class ConsentState(models.Model):
    """Current consent per consumer and purpose, derived from the ledger (latest event wins).

    Kept in the same transaction as each ledger append so readers (bitmaps,
    campaign sends) need not scan the history.
    """

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.CASCADE, related_name="consent_states")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    kind = models.CharField(max_length=16, choices=ConsentKind.choices)
    occurred_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["consumer", "purpose"], name="consentstate_unique")]
        indexes = [models.Index(fields=["purpose", "status", "kind"])]

    def __str__(self) -> str:
        return f"consumer {self.consumer_id} {self.purpose}: {self.status} ({self.kind})"


class AuditEntry(models.Model):
    """The tamper-evident audit log. Append-only; each entry's hash chains to the previous one.

    entry_hash = HMAC(AUDIT_KEY, prev_hash + canonical entry). On PostgreSQL a
    trigger refuses UPDATE, DELETE and TRUNCATE. `seq` numbers the chain from 1 so
    the signed checkpoint (privacy.audit) can name its length cheaply. Entries
    never carry raw identifiers.
    """

    seq = models.BigIntegerField(unique=True, null=True, editable=False, help_text="position in the chain, from 1")
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=100, help_text="user:<id>, apikey:<id>, task:<name> or command:<name>")
    merchant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    purpose = models.CharField(max_length=32, blank=True)
    legal_basis = models.CharField(max_length=40, blank=True)
    activity_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} by {self.actor}"


class SuppressionReason(models.TextChoices):
    OBJECTION = "objection", "Objection to direct marketing"
    RISK_FLAG = "risk_flag", "Risk flag (offers only)"
    OPERATOR = "operator", "Operator blacklist"


class SuppressionScope(models.TextChoices):
    ALL = "all", "Every campaign"
    OFFERS = "offers", "Campaigns that carry an offer"


class Suppression(models.Model):
    """A consumer kept out of campaign sends. Lifting sets lifted_at; the row stays as history."""

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.CASCADE, related_name="suppressions")
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    scope = models.CharField(max_length=8, choices=SuppressionScope.choices, default=SuppressionScope.ALL)
    reference = models.CharField(max_length=64, blank=True, help_text="e.g. risk flag or request id")
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["lifted_at", "scope"])]

    def __str__(self) -> str:
        return f"consumer {self.consumer_id} suppressed ({self.reason}, {self.scope})"


class RequestKind(models.TextChoices):
    ACCESS = "access", "Access (a copy of everything held)"
    ERASURE = "erasure", "Erasure"
    OBJECTION = "objection", "Objection to direct marketing"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"


OPEN_REQUEST_STATUSES = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS)


class DataSubjectRequest(models.Model):
    """A consumer's request to see, erase or stop direct marketing, answered by a privacy officer by `due_at`.

    The raw identifier never reaches this table: `pseudonym` is the consumer
    pseudonym (blanked once the subject is erased) and `subject_digest` a keyed
    digest of it that stays, so a repeated request can be recognised without
    keeping anything that joins to the consumer tables.
    """

    kind = models.CharField(max_length=16, choices=RequestKind.choices)
    status = models.CharField(max_length=16, choices=RequestStatus.choices, default=RequestStatus.RECEIVED)
    pseudonym = models.CharField(max_length=64, blank=True, help_text="Blank once the subject has been erased.")
    subject_digest = models.CharField(max_length=64, db_index=True)
    submitted_by = models.CharField(max_length=100, help_text="apikey:<id> or user:<id>")
    received_at = models.DateTimeField()
    due_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    result = models.JSONField(
        default=dict, blank=True, help_text="The access document, or the erasure's counts per table."
    )
    rejection_reason = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why the last processing attempt failed (nothing was written).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["status", "due_at"])]
        constraints = [
            # One open request per subject and kind: a repeat is answered with the open one's id.
            models.UniqueConstraint(
                fields=["subject_digest", "kind"],
                condition=models.Q(status__in=["received", "in_progress"]),
                name="subjectrequest_one_open_per_kind",
            )
        ]
        verbose_name = "data-subject request"

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_REQUEST_STATUSES


class RiskReason(models.TextChoices):
    SHARED_DEVICE = "shared_device", "Many accounts behind one device"
    OFFER_MULTI_ACCOUNT = "offer_multi_account", "One device redeeming offers through several accounts"
    CANCELLATION_RATIO = "cancellation_ratio", "Abnormal order-cancellation ratio"


class RiskFlagStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    LIFTED = "lifted", "Lifted"


class RiskFlag(models.Model):
    """A risk-control finding about one consumer: a reason code and the evidence as counts, never raw ids.

    While active, the consumer is suppressed from campaigns that carry an offer
    (a Suppression with reason risk_flag and scope offers references the flag).
    """

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.CASCADE, related_name="risk_flags")
    reason = models.CharField(max_length=32, choices=RiskReason.choices)
    rule_version = models.CharField(max_length=20)
    evidence = models.JSONField(default=dict, help_text="Counts that triggered the rule (no identifiers).")
    score = models.IntegerField(help_text="The rule's main measure, e.g. accounts on the device.")
    status = models.CharField(max_length=8, choices=RiskFlagStatus.choices, default=RiskFlagStatus.ACTIVE)
    activity_id = models.BigIntegerField(help_text="The approved risk-control activity the scan ran under.")
    created_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(help_text="The last scan that found the evidence again.")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["consumer", "reason"],
                condition=models.Q(status="active"),
                name="riskflag_one_active_per_reason",
            )
        ]
        indexes = [models.Index(fields=["status", "reason"])]

    def __str__(self) -> str:
        return f"flag #{self.pk} consumer {self.consumer_id} {self.reason} ({self.status})"


class StatementStatus(models.TextChoices):
    RECEIVED = "received", "Awaiting review"
    UPHELD = "upheld", "Upheld (flag lifted)"
    DISMISSED = "dismissed", "Dismissed"


class CounterStatement(models.Model):
    """A consumer's statement against a risk flag, reviewed by a privacy officer."""

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.CASCADE, related_name="counter_statements")
    flag = models.ForeignKey(
        RiskFlag,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="counter_statements",
        help_text="The flag contested; empty means every active flag of the consumer.",
    )
    statement = models.TextField()
    status = models.CharField(max_length=16, choices=StatementStatus.choices, default=StatementStatus.RECEIVED)
    submitted_by = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"counter statement #{self.pk} ({self.get_status_display()})"


# ------------------------------------------------------------------------------------------------ privacy budget
# The release layer's accounting (privacy/release.py, docs/privacy.md "Released numbers"): what each merchant may
# spend per period, what it has spent, and every distinct release it has been given (repeats are free).


class PrivacyBudget(models.Model):
    """A merchant's allowance of privacy loss per period (zCDP ρ), set by a privacy officer.

    Without a row the merchant has settings.PRIVACY_BUDGET_DEFAULT_RHO.
    """

    merchant = models.OneToOneField("merchants.Merchant", on_delete=models.CASCADE, related_name="privacy_budget")
    allowance_rho = models.FloatField(
        help_text="Privacy loss (zCDP ρ) the merchant's new releases may spend per period. A standard estimate "
        "costs 0.0025 (two counts at ρ = 0.00125), a preview 0.0001. See docs/privacy.md."
    )
    note = models.CharField(max_length=300, blank=True, help_text="Why this merchant's allowance differs.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"privacy budget of merchant {self.merchant_id}: ρ {self.allowance_rho} per period"

    def clean(self) -> None:
        if self.allowance_rho is not None and not (0 <= self.allowance_rho <= 10):
            raise ValidationError({"allowance_rho": "An allowance is between 0 and 10 (ρ)."})


class BudgetPeriod(models.Model):
    """What a merchant has spent in one period: the row new releases lock and add to."""

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, related_name="budget_periods")
    period_start = models.DateField()
    spent_rho = models.FloatField(default=0.0)
    releases = models.PositiveIntegerField(default=0, help_text="New distinct releases (repeats are free).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "period_start"], name="budget_period_once")]
        ordering = ["-period_start", "merchant_id"]

    def __str__(self) -> str:
        return f"merchant {self.merchant_id}, period from {self.period_start}: ρ {self.spent_rho:.4f} spent"


class ReleaseLedger(models.Model):
    """One distinct release given to a merchant in a period, keyed by what was counted (never the query text).

    value is the noisy count (or sum) released, unrounded: a repeat reads it back instead of drawing again.
    """

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateField()
    release_key = models.CharField(max_length=64)
    measure = models.CharField(max_length=64, default="count")
    precision = models.CharField(max_length=16)
    rho = models.FloatField()
    value = models.BigIntegerField()
    released_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "period_start", "release_key"], name="release_once_per_period")
        ]
        indexes = [models.Index(fields=["released_at"])]

    def __str__(self) -> str:
        return f"{self.precision} {self.measure} release to merchant {self.merchant_id} ({self.released_at:%Y-%m-%d})"


# ------------------------------------------------------------------------------------------------ messaging policy
# "May this consumer be messaged now" is defined once, in privacy/messaging.py. What officers control of it lives here.

# The age ranges of minors. consumers.models.AgeRange takes its under-18 value from here, so the rule and the
# consumer profile cannot drift apart.
MINOR_AGE_RANGE = "under-18"
MINOR_AGE_RANGES: frozenset[str] = frozenset({MINOR_AGE_RANGE})


class MessagingPolicy(models.Model):
    """The officers' settings of the messaging rule: one row at most (pk 1). Without it the environment default
    (settings.DIRECT_MARKETING_MINORS_ALLOWED) applies. Every change is audited (messaging_policy.set)."""

    minors_allowed = models.BooleanField(
        null=True,
        blank=True,
        help_text="Whether consumers in the under-18 age range may receive direct marketing. Empty: the "
        "environment default (DIRECT_MARKETING_MINORS_ALLOWED, off unless set).",
    )
    note = models.CharField(
        max_length=300, blank=True, help_text="Why (required when allowing minors), e.g. the assessment's reference."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "messaging policy"
        verbose_name_plural = "messaging policy"

    def __str__(self) -> str:
        return "messaging policy"

    def save(self, *args, **kwargs):
        self.pk = 1  # a singleton
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.minors_allowed and not self.note.strip():
            raise ValidationError({"note": "Say why direct marketing may reach minors (the assessment's reference)."})
