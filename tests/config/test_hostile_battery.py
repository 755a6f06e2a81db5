"""A battery of hostile requests across every endpoint: never a 5xx, always a 4xx that names what is wrong.

Huge, empty, deeply nested, Unicode, wrongly typed, overflowing, foreign and injected values, one field at a
time. Each case names the field (or query parameter, or path parameter) the error must mention; None where the
answer is a plain 404 (missing and foreign objects are the same 404).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from consumers.models import Product
from segments.services import segment_create
from tags.models import Tag

BIG = 2**63
HUGE_TEXT = "x" * 200_000
INJECT = "'; DROP TABLE consumers_consumer; --"
UNICODE = "\u202e\U0001f600\u0000\ud800"[:-1] + "\u2028é"
HEX64 = "a" * 64


@dataclass
class Case:
    who: str  # "merchant" or "operator"
    method: str
    path: str
    body: object = None
    params: dict = field(default_factory=dict)
    names: str | None = None  # what the error must mention
    raw: str | None = None  # a raw body instead of JSON
    content_type: str = "application/json"

    def id(self) -> str:
        return f"{self.who}-{self.method}-{self.path}-{self.names}"


CAMPAIGN = {
    "name": "Spring",
    "include_segment_ids": ["{segment}"],
    "title_template": "Hello from {store_name}",
    "body_template": "Something new.",
}
CAMPAIGN_BAD = {
    "name": ["", HUGE_TEXT, None, ["x"]],
    "include_segment_ids": [[], [0], [-1], [BIG], "1", [1.5], ["{foreign}"], [BIG * BIG], list(range(1, 60))],
    "exclude_segment_ids": [[BIG], "x", [0], ["{foreign}"]],
    "title_template": ["", HUGE_TEXT, "{unknown}", "{", ["x"]],
    "body_template": ["", HUGE_TEXT, {"a": 1}],
    "coupon_code": ["x" * 41, ["c"]],
    "discount_percent": ["0", "101", "abc", "NaN", "Infinity", "1e400"],
    "channel": ["carrier-pigeon", INJECT, 1],
    "schedule_kind": ["someday", ""],
    "scheduled_at": ["yesterday", "2024-13-45T99:00:00Z", 12],
    "recurrence": ["*", "0 9 * *", "x" * 101],
    "frequency_cap": [0, 1001, "many", BIG],
    "frequency_window_days": [0, 366, BIG],
    "control_share": ["-0.1", "0.9", "half"],
    "personalised_products": [-1, 1000, "three"],
    "attribution_window_days": [0, 91, BIG],
}
SEGMENT = {"name": "Hostile", "expression": "country:SG"}
SEGMENT_BAD = {
    "name": ["", HUGE_TEXT, {"a": 1}, None],
    "expression": ["", "country:", "country:SG AND", "(" * 5000, INJECT, UNICODE, f"segment:{BIG}", 7, ["country:SG"]],
    "definition": ["text", 5, {"nope": 1}, {"and": []}, [[[[[]]]]], {"tag": {"family": INJECT, "value": "x"}}],
    "kind": ["lookalike", "someone@example.com", 3],
    "refresh_policy": ["sometimes", ""],
    "crontab": ["*", "0 9 * *", "61 * * * *", "", 5],
    "description": [["x"], {"a": 1}],
}
ESTIMATE_BAD = {
    "expression": ["", "country:", "(" * 5000, INJECT, UNICODE, 42, None, f"segment:{BIG}", "segment:{foreign}"],
    "definition": ["x", 1, {"or": "x"}],
}
EVENT = {
    "event_id": "evt-1",
    "consumer_id": "someone@example.org",
    "merchant": "acme",
    "sku": "SKU-1",
    "event_type": "view",
    "occurred_at": "2024-05-01T12:30:00Z",
}
EVENT_BAD = {
    "event_id": ["", "x" * 1000, ["e"], None],
    "consumer_id": ["", None, ["x"], "x" * 1000],
    "merchant": ["no-such-merchant", INJECT, "", 5],
    "sku": ["", "x" * 65, {"a": 1}],
    "event_type": ["teleport", "", 1],
    "occurred_at": ["", "2024-05-01T12:30:00+18:00", "9999-01-01T00:00:00Z", "1969-12-31T00:00:00Z", "soon", 5],
    "quantity": [0, -1, BIG, "many", 1.5],
    "price": ["-1", "abc", "NaN", "1e400", BIG],
    "discount": ["-5", "x"],
    "title": [HUGE_TEXT[:1000]],
    "brand": ["x" * 101],
}
PROFILE = {"consumer_id": "someone@example.org", "age": 30}
PROFILE_BAD = {
    "age": [-1, 500, "old", BIG, 1.5],
    "birth_date": ["yesterday", "2999-01-01", "0000-00-00", 5],
    "country": ["Atlantis", INJECT, 5],
    "gender": ["q", 5],
    "consumer_id": ["", None],
}
CONSENT = {
    "consumer_id": "someone@example.org",
    "purpose": "direct_marketing",
    "status": "granted",
    "source": "app",
    "occurred_at": "2024-05-01T12:30:00Z",
}
CONSENT_BAD = {
    "purpose": ["world_domination", "", 5],
    "status": ["maybe", None],
    "kind": ["implied-ish", 5],
    "source": ["", "x" * 101],
    "occurred_at": ["", "2024-05-01T12:30:00+16:00", "then"],
    "consumer_id": ["", ["x"]],
}
TRACKING_EVENT = {"delivery_id": 1, "kind": "opened"}
TRACKING_BAD = {
    "delivery_id": [0, -1, BIG, "one", None, 1.5],
    "kind": ["licked", "", 3],
    "occurred_at": ["then", "2024-99-01T00:00:00Z"],
    "order_value": ["abc", "NaN", "1e20"],
    "idempotency_key": ["x" * 101, ["k"]],
}


def _field_cases(who, path, valid, bad, wrap) -> list[Case]:
    cases = []
    for name, values in bad.items():
        for value in values:
            cases.append(Case(who, "post", path, wrap({**valid, name: value}), names=name))
    return cases


def cases() -> list[Case]:
    c: list[Case] = []
    # ---- merchant endpoints
    c += _field_cases("merchant", "/api/v1/campaigns/", CAMPAIGN, CAMPAIGN_BAD, lambda b: b)
    c += _field_cases("merchant", "/api/v1/segments/", SEGMENT, SEGMENT_BAD, lambda b: b)
    c += [Case("merchant", "post", "/api/v1/segments/", {**SEGMENT, "definition": {"and": []}}, names="definition")]
    for name, values in ESTIMATE_BAD.items():
        c += [Case("merchant", "post", "/api/v1/audiences/estimate", {name: v}, names=name) for v in values]
    for path in ("/api/v1/segments/", "/api/v1/campaigns/"):
        for param, value in [("limit", 0), ("limit", BIG), ("limit", "ten"), ("offset", -1), ("offset", BIG)]:
            c.append(Case("merchant", "get", path, params={param: value}, names=param))
    c += [Case("merchant", "get", "/api/v1/tags/", params={"family": v}, names="family") for v in ("nope", INJECT)]
    for path in (
        f"/api/v1/segments/{BIG}",
        "/api/v1/segments/{foreign}",
        "/api/v1/segments/{foreign}/insights",
        "/api/v1/segments/{own}/overlap/{foreign}",
        f"/api/v1/segments/{{own}}/overlap/{BIG}",
        f"/api/v1/campaigns/{BIG}",
        f"/api/v1/campaigns/{BIG}/report",
        "/api/v1/campaigns/{foreign_campaign}",
        "/api/v1/campaigns/{foreign_campaign}/audience",
        "/api/v1/products/{foreign_sku}/similar",
        "/api/v1/products/%00/similar",
        f"/api/v1/products/{'x' * 5000}/similar",
    ):
        c.append(Case("merchant", "get", path))
    for path in (
        "/api/v1/segments/{foreign}/refresh",
        f"/api/v1/segments/{BIG}/lookalike",
        "/api/v1/campaigns/{foreign_campaign}/launch",
        "/api/v1/campaigns/{foreign_campaign}/cancel",
    ):
        c.append(Case("merchant", "post", path, {}))
    c += [
        Case("merchant", "patch", "/api/v1/segments/{own}", {"name": HUGE_TEXT}, names="name"),
        Case("merchant", "patch", "/api/v1/segments/{own}", {"crontab": "* *"}, names="crontab"),
        Case("merchant", "patch", "/api/v1/segments/{own}", {"expression": "(" * 3000}, names="expression"),
        Case("merchant", "patch", "/api/v1/segments/{own}", {"refresh_policy": INJECT}, names="refresh_policy"),
        Case("merchant", "post", "/api/v1/segments/{own}/lookalike", {"name": "L", "size": -5}, names="size"),
        Case("merchant", "post", "/api/v1/segments/{own}/lookalike", {"name": "L", "size": BIG}, names="size"),
        Case("merchant", "patch", "/api/v1/campaigns/{draft}", {"frequency_cap": BIG}, names="frequency_cap"),
        Case("merchant", "patch", "/api/v1/campaigns/{draft}", {"include_segment_ids": [BIG]}, names="include"),
        Case("merchant", "get", "/api/v1/campaigns/{draft}/audience", params={"limit": BIG}, names="limit"),
        Case("merchant", "get", "/api/v1/campaigns/{draft}/audience", params={"cursor": INJECT}, names="audience"),
        Case("merchant", "post", "/api/v1/segments/", raw="[" * 100_000 + "]" * 100_000, names="nested"),
        Case("merchant", "post", "/api/v1/campaigns/", raw='{"name": ', names="JSON"),
        Case("merchant", "post", "/api/v1/campaigns/", raw="[]", names="non_field_errors"),
        Case("merchant", "post", "/api/v1/audiences/estimate", raw="", names="expression"),
        Case("merchant", "post", "/api/v1/audiences/estimate", raw="\xff\xfe", names="JSON"),
        Case("merchant", "post", "/api/v1/campaigns/", raw=json.dumps({"name": "x" * 3_000_000}), names="bytes"),
    ]
    # ---- operator endpoints
    c += _field_cases("operator", "/api/v1/ingest/events", EVENT, EVENT_BAD, lambda b: [b])
    c += _field_cases("operator", "/api/v1/ingest/profiles", PROFILE, PROFILE_BAD, lambda b: [b])
    c += _field_cases("operator", "/api/v1/consents", CONSENT, CONSENT_BAD, lambda b: [b])
    c += _field_cases("operator", "/api/v1/tracking/", TRACKING_EVENT, TRACKING_BAD, lambda b: {"events": [b]})
    c += [
        Case("operator", "post", "/api/v1/tracking/", {"events": []}, names="events"),
        Case("operator", "post", "/api/v1/tracking/", {"events": "all"}, names="events"),
        Case("operator", "post", "/api/v1/tracking/", {"events": [TRACKING_EVENT] * 1001}, names="events"),
        Case("operator", "post", "/api/v1/tracking/", raw="[" * 100_000, names="nested"),
        Case("operator", "post", "/api/v1/ingest/events", {"not": "an array"}, names="array"),
        Case("operator", "post", "/api/v1/ingest/events", raw="[1, 2", names="line 1"),
        Case("operator", "post", "/api/v1/ingest/events", ["not an object"], names="row"),
        Case(
            "operator",
            "post",
            "/api/v1/ingest/events",
            raw="{}\n[",
            content_type="application/x-ndjson",
            names="line 2",
        ),  # fmt: skip
        Case("operator", "post", "/api/v1/ingest/events", [EVENT], params={"atomic": "perhaps"}, names="atomic"),
        Case("operator", "post", "/api/v1/ingest/events", raw="[" + "9" * 5000 + "]", names="number"),
    ]
    for kind in ("", "delete-everything", 5, None):
        c.append(
            Case("operator", "post", "/api/v1/privacy/requests", {"kind": kind, "consumer_id": "a@b.c"}, names="kind")
        )
    for consumer_id in ("", "x" * 400, {"a": 1}, ["a@b.c"], None):
        c.append(
            Case(
                "operator",
                "post",
                "/api/v1/privacy/requests",
                {"kind": "access", "consumer_id": consumer_id},
                names="consumer_id",
            )  # fmt: skip
        )
    statement = {"consumer_id": "a@b.c", "statement": "Not me."}
    for name, value in [("statement", ""), ("statement", "x" * 10_001), ("flag", 0), ("flag", BIG), ("flag", "x"),
                        ("consumer_id", ""), ("statement", ["x"])]:  # fmt: skip
        c.append(Case("operator", "post", "/api/v1/privacy/counter-statements", {**statement, name: value}, names=name))
    c += [Case("operator", "post", "/api/v1/privacy/counter-statements", raw="[" * 100_000, names="nested")]
    for param, value in [("limit", 0), ("limit", 1001), ("limit", "x"), ("offset", -1), ("offset", BIG)]:
        c.append(Case("operator", "get", "/api/v1/privacy/blacklist", params={param: value}, names=param))
    for path in (f"/api/v1/privacy/requests/{BIG}", f"/api/v1/privacy/counter-statements/{BIG}",
                 "/api/v1/privacy/requests/0", f"/api/v1/inbox/{HEX64}"):  # fmt: skip
        c.append(Case("operator", "get", path))
    for pseudonym in ("not-a-pseudonym", "A" * 64, "%00", "x" * 3000):
        c.append(Case("operator", "get", f"/api/v1/inbox/{pseudonym}", names="pseudonym"))
    for params, names in [({}, "merchant"), ({"merchant": INJECT}, "merchant"), ({"merchant": "acme", "n": 0}, "n"),
                          ({"merchant": "acme", "n": BIG}, "n"), ({"merchant": "acme", "n": "ten"}, "n")]:  # fmt: skip
        c.append(Case("operator", "get", f"/api/v1/recommendations/{HEX64}", params=params, names=names))
    c.append(Case("operator", "get", f"/api/v1/recommendations/{HEX64}", params={"merchant": "no-such"}))
    return c


CASES = cases()


def test_the_battery_is_large():
    assert len(CASES) >= 150


@pytest.fixture
def world(merchant, other_merchant, all_purposes_approved):
    from campaigns.models import Campaign

    Tag.objects.create(family="country", value="SG", label="Singapore", definition="Lives in SG", rule_version="1")
    own = segment_create(merchant=merchant, name="ours", actor="test", expression="country:SG")
    foreign = segment_create(merchant=other_merchant, name="theirs", actor="test", expression="country:SG")
    draft = Campaign.objects.create(merchant=merchant, name="ours", title_template="Hi", body_template="x")
    draft.include_segments.set([own])
    theirs = Campaign.objects.create(merchant=other_merchant, name="theirs", title_template="Hi", body_template="x")
    product = Product.objects.create(merchant=other_merchant, sku="THEIRS-1", title="Theirs", category="beauty")
    return {
        "own": own.pk,
        "segment": own.pk,
        "foreign": foreign.pk,
        "draft": draft.pk,
        "foreign_campaign": theirs.pk,
        "foreign_sku": product.sku,
    }


def _fill(value, ids: dict):
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        for name, found in ids.items():
            value = value.replace("{" + name + "}", str(found))
        return value
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) if k not in ("title_template", "body_template") else v for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", CASES, ids=[f"{n:03d}-{c.id()}"[:120] for n, c in enumerate(CASES)])
def test_a_hostile_request_is_a_4xx_naming_what_is_wrong(case, world, merchant_client, operator_client):
    client = merchant_client if case.who == "merchant" else operator_client
    path = _fill(case.path, world)
    call = getattr(client, case.method)
    if case.raw is not None:
        response = call(path + ("?" + "&".join(f"{k}={v}" for k, v in case.params.items()) if case.params else ""),
                        case.raw, content_type=case.content_type)  # fmt: skip
    elif case.method == "get":
        response = call(path, case.params)
    else:
        query = "?" + "&".join(f"{k}={v}" for k, v in case.params.items()) if case.params else ""
        response = call(path + query, _fill(case.body, world), format="json")
    assert response.status_code < 500, response.content[:500]
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    if case.names:
        assert case.names.lower() in response.content.decode().lower(), response.content[:500]
