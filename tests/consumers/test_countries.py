import pytest

from consumers.countries import country_code, country_from_address


@pytest.mark.parametrize(
    "value,code",
    [
        ("United Kingdom", "GB"),
        ("EIRE", "IE"),
        ("RSA", "ZA"),
        ("sg", "SG"),
        ("SGP", "SG"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Côte d’Ivoire", "CI"),
        ("the Netherlands", "NL"),
        ("USA", "US"),
        ("uk", "GB"),
        ("Korea, Republic of", "KR"),
        ("  malaysia ", "MY"),
    ],
)
def test_codes_names_and_aliases(value, code):
    assert country_code(value) == code


@pytest.mark.parametrize("value", ["Channel Islands", "European Community", "Unspecified", "", "XX", "Atlantis"])
def test_things_that_are_not_countries(value):
    assert country_code(value) is None


@pytest.mark.parametrize(
    "address,code",
    [
        ("1 Raffles Place, Singapore 048616", "SG"),
        ("10 Downing St\nLondon SW1A 2AA\nUnited Kingdom", "GB"),
        ("75001 Paris, France", "FR"),
        ("Jl. Sudirman, Jakarta 10220, Indonesia", "ID"),
        ("San Jose, CA 95112", None),  # a US state, not Canada
        ("nowhere in particular", None),
    ],
)
def test_addresses(address, code):
    assert country_from_address(address) == code
