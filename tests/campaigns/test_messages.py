from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.messages import (
    CompiledTemplate,
    ProductInfo,
    TemplateSyntaxProblem,
    campaign_constants,
    format_offer,
    template_parse,
    template_problems,
)


def problems(text, *, n=3, coupon="", discount=None):
    return template_problems(text, personalised_products=n, coupon_code=coupon, discount_percent=discount)


def test_a_valid_template_has_no_problems():
    assert problems("{product_1_title} and {products} at {store_name}: {offer}", coupon="SPRING") == []


def test_unknown_placeholder_is_named_with_its_position():
    [message] = problems("Hi {prodcut_1_title}!")
    assert "{prodcut_1_title}" in message
    assert "position 4 (line 1, column 4)" in message
    assert "Known placeholders" in message


def test_position_counts_lines_and_columns_in_a_body():
    [message] = problems("First line\nSecond {nope} line")
    assert "position 19 (line 2, column 8)" in message


def test_product_beyond_the_personalised_count_is_refused():
    [message] = problems("{product_4_title}", n=3)
    assert "refers to product 4" in message and "personalises 3 products" in message


def test_product_zero_and_product_list_without_personalisation():
    assert "numbered from 1" in problems("{product_0_title}")[0]
    assert "needs personalised products" in problems("{products}", n=0)[0]


def test_offer_placeholders_need_an_offer():
    assert "needs an offer" in problems("{offer}")[0]
    assert "needs a coupon code" in problems("{coupon_code}", discount=Decimal("10"))[0]
    assert "needs a discount" in problems("{discount}", coupon="X")[0]
    assert problems("{offer} {discount}", discount=Decimal("10")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello {store_name", "Unclosed '{' at position 7"),
        ("Hello } there", "Unmatched '}' at position 7"),
        ("Hi {} there", "Empty placeholder"),
        ("Hi {a{b}", "Unclosed '{' at position 4"),
    ],
)
def test_bad_braces_are_reported_with_their_position(text, expected):
    [message] = problems(text)
    assert expected in message


def test_doubled_braces_are_literal():
    assert template_parse("{{literal}}") == ["{literal}"]
    compiled = CompiledTemplate("{{x}} {store_name}", constants={"store_name": "Acme {Outdoor}"})
    assert compiled.render([]) == "{x} Acme {Outdoor}"


def test_rendering_fills_products_and_constants():
    constants = campaign_constants(store_name="Acme", coupon_code="SPRING15", discount_percent=Decimal("15.00"))
    compiled = CompiledTemplate(
        "{store_name}: {product_1_title} for {product_1_price}, also {products}. {offer}", constants=constants
    )
    products = [ProductInfo("Tent", Decimal("99.5")), ProductInfo("Stove", None)]
    assert compiled.render(products) == "Acme: Tent for 99.50, also Tent, Stove. 15% off with code SPRING15"


def test_missing_products_render_empty_rather_than_failing():
    compiled = CompiledTemplate("[{product_2_title}]", constants={})
    assert compiled.render([ProductInfo("Only one", None)]) == "[]"


def test_offer_wording():
    assert format_offer(coupon_code="", discount_percent=Decimal("12.50")) == "12.5% off"
    assert format_offer(coupon_code="C1", discount_percent=None) == "code C1"
    assert format_offer(coupon_code="", discount_percent=None) == ""


@given(st.text(max_size=60))
def test_parsing_any_text_either_succeeds_or_names_a_position(text):
    try:
        parts = template_parse(text)
    except TemplateSyntaxProblem as exc:
        assert 1 <= exc.position <= len(text)
        assert f"position {exc.position}" in str(exc)
    else:
        # A template without placeholders renders back to its literal text.
        if all(isinstance(p, str) for p in parts):
            assert CompiledTemplate(text, constants={}).render([]) == "".join(parts)
