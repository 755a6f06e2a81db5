"""One person, one pseudonym: phone numbers are read with phonenumbers and pseudonymised in E.164."""

from __future__ import annotations

import pytest

from privacy.pseudonyms import (
    InvalidIdentifier,
    looks_like_phone_number,
    make_pseudonymiser,
    normalise_identifier,
    pseudonymise,
)

SPELLINGS = [
    "+65 9000 1234",
    "0065 9000 1234",
    "65 9000 1234",
    "+6590001234",
    "9000 1234",
    "9000-1234",
    "(+65) 9000.1234",
    " +65-9000-1234 ",
]


def test_every_spelling_of_one_phone_number_is_one_pseudonym():
    assert {normalise_identifier(s) for s in SPELLINGS} == {"+6590001234"}
    assert len({pseudonymise(s) for s in SPELLINGS}) == 1
    fast = make_pseudonymiser()
    assert {fast(s) for s in SPELLINGS} == {pseudonymise("+65 9000 1234")}


def test_a_number_with_its_country_code_does_not_depend_on_the_default_region(settings):
    sg = pseudonymise("+44 20 7946 0958")
    settings.PHONE_DEFAULT_REGION = "GB"
    assert pseudonymise("+44 20 7946 0958") == sg == pseudonymise("020 7946 0958") == pseudonymise("0044 20 7946 0958")
    with pytest.raises(InvalidIdentifier):
        pseudonymise("9000 1234")  # now read as a British number, which it cannot be


def test_emails_and_user_ids_keep_their_rules():
    assert normalise_identifier("  Alice.Liddell+promo@Wonderland.EXAMPLE ") == "alice.liddell+promo@wonderland.example"
    assert normalise_identifier("user:1000123") == "user:1000123"
    assert normalise_identifier("taobao:42") == "taobao:42"
    assert normalise_identifier("12345") == "12345"  # too short for a phone number: a user id
    assert not looks_like_phone_number("1-800-FLOWERS")
    assert not looks_like_phone_number("a@65 9000 1234")


@pytest.mark.parametrize("raw", ["1000123", "+65 1234", "0012 3456", "+999 1234 5678", "0000000"])
def test_a_phone_shaped_id_that_is_no_phone_number_is_refused_without_echoing_it(raw):
    assert looks_like_phone_number(raw)
    with pytest.raises(InvalidIdentifier) as caught:
        pseudonymise(raw)
    message = str(caught.value)
    assert raw.strip() not in message and raw.replace(" ", "") not in message
    assert "user:" in message  # says what to do with an all-digit user id


def test_the_bulk_pseudonymiser_gives_every_kind_of_identifier_the_same_pseudonym_as_the_one_at_a_time_rule():
    identifiers = [
        "user-42",
        "  user-42  ",
        "U42",
        "Alice@Example.COM ",
        "(+65) 9000-1234",
        "-65 9000 1234",
        ".90001234",
        "/90001234",
        "0065 9000 1234",
        "12345",
        "1234567890123456789",
        "user:90001234",
        "",
        "ünïcode-id",
    ]
    fast = make_pseudonymiser()
    assert [fast(i) for i in identifiers] == [pseudonymise(i) for i in identifiers]
    with pytest.raises(InvalidIdentifier):
        fast("+1 555 0000")  # phone-shaped, but too short for its country
