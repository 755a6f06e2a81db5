from django.test import Client

from merchants.models import ApiKey, ApiKeyKind
from merchants.services import api_key_issue


def test_create_shows_the_key_once_and_stores_only_its_digest(portal_client, merchant):
    response = portal_client.post("/api-keys/", {"name": "  CRM sync  "})
    assert response.status_code == 200
    key = ApiKey.objects.get(merchant=merchant)
    assert key.name == "CRM sync"
    page = response.content.decode()
    start = page.index('data-testid="new-key">') + len('data-testid="new-key">')
    raw_key = page[start : page.index("</code>", start)]
    assert raw_key.startswith(key.prefix) and raw_key != key.key_digest
    assert raw_key not in portal_client.get("/api-keys/").content.decode()


def test_a_blank_name_is_rejected_next_to_the_field(portal_client, merchant):
    response = portal_client.post("/api-keys/", {"name": "   "})
    assert response.status_code == 400
    assert 'id="id_name_error"' in response.content.decode()
    assert not ApiKey.objects.exists()


def test_a_too_long_name_is_rejected(portal_client):
    response = portal_client.post("/api-keys/", {"name": "x" * 101})
    assert response.status_code == 400
    assert "at most 100 characters" in response.content.decode()


def test_another_merchants_key_cannot_be_revoked_or_seen(portal_client, other_merchant):
    foreign = api_key_issue(kind=ApiKeyKind.MERCHANT, name="Globex secret tool", merchant=other_merchant).api_key
    assert "Globex secret tool" not in portal_client.get("/api-keys/").content.decode()
    assert portal_client.post(f"/api-keys/{foreign.pk}/revoke/").status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


def test_operator_keys_are_never_listed_or_revocable(portal_client):
    operator = api_key_issue(kind=ApiKeyKind.OPERATOR, name="operator ingest").api_key
    assert "operator ingest" not in portal_client.get("/api-keys/").content.decode()
    assert portal_client.post(f"/api-keys/{operator.pk}/revoke/").status_code == 404


def test_revoked_key_stops_working_on_the_api(portal_client, merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="tool", merchant=merchant)
    portal_client.post(f"/api-keys/{issued.api_key.pk}/revoke/")
    response = Client().get("/api/v1/schema/", HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None
    assert response.status_code in (200, 401, 403)  # the schema is public; the key itself is what we checked


def test_analysts_see_keys_but_cannot_create_or_revoke(analyst_client, merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="tool", merchant=merchant)
    page = analyst_client.get("/api-keys/").content.decode()
    assert "tool" in page and "Create key" not in page
    assert analyst_client.post("/api-keys/", {"name": "mine"}).status_code == 403
    assert analyst_client.post(f"/api-keys/{issued.api_key.pk}/revoke/").status_code == 403
    assert ApiKey.objects.filter(merchant=merchant).count() == 1


def test_revoke_needs_post(portal_client, merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="tool", merchant=merchant)
    assert portal_client.get(f"/api-keys/{issued.api_key.pk}/revoke/").status_code == 405


def test_absurd_ids_are_404_not_errors(portal_client):
    assert portal_client.post("/api-keys/" + "9" * 30 + "/revoke/").status_code == 404
