"""The segment language: grammar, precedence, errors with positions, JSON form, and robustness."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segments.language import (
    ACTIONS,
    ActionTerm,
    And,
    Not,
    Or,
    SegmentSyntaxError,
    SegmentTerm,
    TagTerm,
    definition_parse,
    from_json,
    parse,
    to_json,
    to_text,
)

SG = TagTerm("country", "SG")
SPORTS = TagTerm("interest", "sports")
OUTDOOR = TagTerm("interest", "outdoor")
HIGH = TagTerm("discount_sensitivity", "high")


def test_design_example_parses_with_the_documented_precedence():
    node = parse("country:SG AND (interest:sports OR interest:outdoor) AND NOT discount_sensitivity:high")
    assert node == And((SG, Or((SPORTS, OUTDOOR)), Not(HIGH)))


def test_not_binds_tighter_than_and_and_and_tighter_than_or():
    assert parse("NOT country:SG AND interest:sports") == And((Not(SG), SPORTS))
    assert parse("country:SG OR interest:sports AND interest:outdoor") == Or((SG, And((SPORTS, OUTDOOR))))
    assert parse("country:SG AND interest:sports OR interest:outdoor") == Or((And((SG, SPORTS)), OUTDOOR))
    assert parse("NOT NOT country:SG") == Not(Not(SG))


def test_keywords_are_case_insensitive_and_values_keep_their_case():
    assert parse("Country:SG and not Interest:sports oR interest:outdoor") == Or((And((SG, Not(SPORTS))), OUTDOOR))
    assert parse("SEGMENT:12") == SegmentTerm(12)
    assert parse("PURCHASED(Category='beauty')") == ActionTerm("purchased", category="beauty")


def test_quoted_values_may_hold_spaces_quotes_and_keywords():
    assert parse('interest:"home & living"') == TagTerm("interest", "home & living")
    assert parse("interest:'home & living'") == TagTerm("interest", "home & living")
    assert parse(r'interest:"say \"hi\""') == TagTerm("interest", 'say "hi"')
    assert parse("interest:and") == TagTerm("interest", "and")
    assert parse("age_range:25-34") == TagTerm("age_range", "25-34")


def test_design_action_example():
    node = parse('purchased(category="beauty", within="30d", min_count=2) AND age_range:25-34')
    assert node == And(
        (ActionTerm("purchased", category="beauty", within="30d", min_count=2), TagTerm("age_range", "25-34"))
    )
    assert node.operands[0].within_hours == 30 * 24


@pytest.mark.parametrize(("within", "hours"), [("12h", 12), ("30d", 720), ("8w", 8 * 168), ("1H", 1), ("  7d ", 168)])
def test_within_units(within, hours):
    assert parse(f'viewed(within="{within}")').within_hours == hours


def test_every_action_with_every_argument():
    for action in ACTIONS:
        node = parse(f'{action}(category="a b", brand=Glow, merchant=acme, within=2w, min_count=3)')
        assert node == ActionTerm(action, category="a b", brand="Glow", merchant="acme", within="2w", min_count=3)
    assert parse("carted()") == ActionTerm("carted")


def test_spend_count_and_occurrence_arguments():
    node = parse(
        'purchased(min_spend=50, max_count=3, max_spend="120.50", min_avg_order=20.0, max_avg_order=80, '
        'first_within="90d", last_before=4w, product="SKU 1")'
    )
    assert node == ActionTerm(
        "purchased",
        product="SKU 1",
        min_count=0,
        max_count=3,
        min_spend=Decimal("50"),
        max_spend=Decimal("120.5"),
        min_avg_order=Decimal("20"),
        max_avg_order=Decimal("80"),
        first_within="90d",
        last_before="4w",
    )
    # Canonical: arguments in one order, amounts without trailing zeros, the default min_count left out.
    assert to_text(node) == (
        'purchased(product="SKU 1", max_count=3, min_spend=50, max_spend=120.5, min_avg_order=20, '
        'max_avg_order=80, first_within="90d", last_before="4w")'
    )
    assert to_json(node)["max_spend"] == 120.5 and to_json(node)["min_spend"] == 50


def test_max_count_zero_means_did_not():
    node = parse('viewed(category=beauty, within="30d", max_count=0)')
    assert node.min_count == 0 and node.max_count == 0 and node.includes_none
    assert to_text(node) == 'viewed(category="beauty", within="30d", max_count=0)'
    # With max_count, min_count defaults to 0 ("at most N", zero included); written out when it is not.
    assert parse("purchased(max_count=3)").includes_none
    bounded = parse("purchased(min_count=1, max_count=3)")
    assert not bounded.includes_none and to_text(bounded) == "purchased(min_count=1, max_count=3)"
    # A spend floor above zero needs an event; a spend ceiling does not.
    assert not parse("purchased(max_count=3, min_spend=10)").includes_none
    assert parse("purchased(max_count=3, max_spend=10)").includes_none
    assert not parse("purchased(max_count=3, first_within=7d)").includes_none


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("viewed(min_spend=5)", 18, "min_spend applies to purchased() only"),
        ("purchased(min_count=0)", 21, "min_count=0 matches everyone"),
        ("purchased(min_count=4, max_count=2)", 34, "max_count is below min_count (4)"),
        ("purchased(min_spend=50, max_spend=20)", 35, "max_spend is below min_spend (50)"),
        ("purchased(min_avg_order=9.5, max_avg_order=9)", 44, "max_avg_order is below min_avg_order (9.5)"),
        ("purchased(max_count=0, first_within=30d)", 37, "max_count=0 selects consumers with no matching event"),
        ("purchased(within=30d, last_before=60d)", 35, "cannot be combined with within"),
        ("purchased(min_spend=1.234)", 21, "at most two decimals"),
        ("purchased(min_spend=-1)", 21, "at least 0"),
        ("purchased(max_spend=99999999999)", 21, "at most 10,000,000,000"),
        ("purchased(first_within=soon)", 24, "first_within must be a number of hours, days or weeks"),
        ("purchased(max_count=-1)", 21, "max_count must be between 0"),
    ],
)
def test_new_argument_errors_name_the_argument(text, column, message):
    error = error_of(text)
    assert error.column == column, (error.column, str(error))
    assert message in str(error)


def test_new_argument_errors_in_json_name_the_path():
    with pytest.raises(SegmentSyntaxError) as caught:
        from_json({"and": [{"action": "viewed", "max_count": 0}, {"action": "carted", "min_spend": 3}]})
    assert caught.value.path == "$.and[1].min_spend"
    assert from_json({"action": "purchased", "min_spend": "19.90"}) == ActionTerm(
        "purchased", min_spend=Decimal("19.9")
    )
    assert from_json({"action": "purchased", "min_spend": 19.9}) == parse("purchased(min_spend=19.90)")


def error_of(text: str) -> SegmentSyntaxError:
    with pytest.raises(SegmentSyntaxError) as caught:
        parse(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "column", "found", "expected_has"),
    [
        ("", 1, "end of input", "NOT"),
        ("country:SG AND", 15, "end of input", "("),
        ("country:SG AND OR interest:sports", 16, "'OR'", "NOT"),
        ("(country:SG", 12, "end of input", ")"),
        ("country:SG)", 11, "')'", "end of expression"),
        ("country:", 9, "end of input", "a country value"),
        ("country:SG interest:sports", 12, "'interest'", "AND"),
        ("sports", 1, "'sports'", "a tag (family:value)"),
        ("purchased", 10, "end of input", "("),
        ("purchased(colour='red')", 11, "'colour'", "category"),
        ("purchased(category)", 19, "')'", "'=' after category"),
        ("purchased(within='30 days')", 18, "'30 days'", "a duration like 12h, 30d or 8w"),
        ("purchased(within=0d)", 18, "'0d'", "a duration like 12h, 30d or 8w"),
        ("purchased(min_count=0)", 21, "0", "an integer >= 1"),
        ("purchased(min_count=two)", 21, "'two'", "an integer >= 1"),
        ("purchased(min_count=2, min_count=3)", 24, "'min_count'", "category"),
        ("segment:abc", 9, "'abc'", "a segment id"),
        ("interest:'home", 10, "end of input", "a closing '"),
        ("()", 2, "')'", "NOT"),
    ],
)
def test_errors_name_the_position_what_was_found_and_what_was_expected(text, column, found, expected_has):
    error = error_of(text)
    assert error.column == column, str(error)
    assert error.position == column
    assert error.found == found, str(error)
    assert any(expected_has in e for e in error.expected), error.expected
    assert f"column {column}" in str(error)
    details = error.as_details()
    assert {"position", "found", "expected", "line", "column", "offset"} <= set(details)


def test_errors_on_later_lines_give_the_line():
    error = error_of("country:SG AND\n  interest:")
    assert (error.line, error.column, error.position) == (2, 12, 27)


def test_nesting_and_size_are_bounded_with_a_syntax_error():
    assert "nested" in str(error_of("(" * 500 + "country:SG" + ")" * 500))
    assert "nested" in str(error_of("NOT " * 2000 + "country:SG"))
    assert "terms" in str(error_of(" OR ".join(["country:SG"] * 300)))
    assert "longer" in str(error_of("country:SG " * 2000))


def test_json_form_equals_text_form():
    text = 'country:SG AND (interest:sports OR interest:outdoor) AND NOT purchased(category="beauty", min_count=2)'
    data = {
        "and": [
            {"tag": {"family": "country", "value": "SG"}},
            {
                "or": [
                    {"tag": {"family": "interest", "value": "sports"}},
                    {"tag": {"family": "interest", "value": "outdoor"}},
                ]
            },
            {"not": {"action": "purchased", "category": "beauty", "min_count": 2}},
        ]
    }
    assert from_json(data) == parse(text)
    assert to_json(parse(text)) == data
    assert to_text(from_json(data)) == text


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ([], "$"),
        ({"and": []}, "$.and"),
        ({"and": [{"tag": {"family": "country"}}]}, "$.and[0].tag"),
        ({"or": [{"tag": {"family": "country", "value": 3}}, {"segment": 1}]}, "$.or[0].tag.value"),
        ({"not": {"segment": "x"}}, "$.not.segment"),
        ({"action": "bought"}, "$.action"),
        ({"action": "viewed", "within": "30 days"}, "$.within"),
        ({"action": "viewed", "min_count": 0}, "$.min_count"),
        ({"tag": {"family": "segment", "value": "1"}}, "$.tag.family"),
        ({"nand": []}, "$"),
    ],
)
def test_json_errors_name_the_path(data, path):
    with pytest.raises(SegmentSyntaxError) as caught:
        from_json(data)
    assert caught.value.position == path
    assert caught.value.as_details()["path"] == path


def test_exactly_one_form():
    with pytest.raises(SegmentSyntaxError):
        definition_parse()
    with pytest.raises(SegmentSyntaxError):
        definition_parse(expression="country:SG", definition={"segment": 1})


# ------------------------------------------------------------------------------------------------ properties

families = st.sampled_from(["country", "interest", "age_range", "discount_sensitivity"])
values = st.text(min_size=1, max_size=12)
tag_terms = st.builds(TagTerm, families, values)
segment_terms = st.builds(SegmentTerm, st.integers(min_value=1, max_value=10**12))
windows = st.builds(lambda n, u: f"{n}{u}", st.integers(1, 250), st.sampled_from("hdw"))
amounts = st.decimals(min_value=0, max_value=10**6, places=2)


def _valid_action(args: dict):
    """The term these arguments make, or None when they do not combine (max below min, say)."""
    try:
        return from_json({key: value for key, value in args.items() if value is not None})
    except SegmentSyntaxError:
        return None


action_terms = (
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(ACTIONS),
            "category": st.none() | st.text(min_size=1, max_size=10).filter(str.strip),
            "brand": st.none() | st.text(min_size=1, max_size=10).filter(str.strip),
            "product": st.none() | st.text(min_size=1, max_size=10).filter(str.strip),
            "merchant": st.none() | st.sampled_from(["acme", "Globex"]),
            "within": st.none() | windows,
            "min_count": st.none() | st.integers(1, 50),
            "max_count": st.none() | st.integers(0, 60),
            "min_spend": st.none() | amounts.map(str),
            "max_spend": st.none() | amounts.map(float),
            "min_avg_order": st.none() | amounts.map(str),
            "max_avg_order": st.none() | amounts.map(str),
            "first_within": st.none() | windows,
            "last_before": st.none() | windows,
        }
    )
    .map(_valid_action)
    .filter(lambda term: term is not None)
)


def _normal(node):
    """And/Or built by hypothesis may nest the same kind; the parser flattens it."""
    if isinstance(node, And | Or):
        flat = []
        for o in map(_normal, node.operands):
            flat.extend(o.operands if type(o) is type(node) else [o])
        return type(node)(tuple(flat))
    if isinstance(node, Not):
        return Not(_normal(node.operand))
    return node


trees = st.recursive(
    tag_terms | segment_terms | action_terms,
    lambda children: (
        st.builds(Not, children)
        | st.builds(And, st.lists(children, min_size=2, max_size=4).map(tuple))
        | st.builds(Or, st.lists(children, min_size=2, max_size=4).map(tuple))
    ),
    max_leaves=20,
).map(_normal)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_text_and_json_forms_round_trip(tree):
    assert parse(to_text(tree)) == tree
    assert from_json(json.loads(json.dumps(to_json(tree)))) == tree


alphabet = st.sampled_from(
    list("()\"':,= \n\t\\")
    + [
        "AND",
        "OR",
        "NOT",
        "and",
        "not",
        "segment",
        "purchased",
        "viewed",
        "country",
        "SG",
        "within",
        "min_count",
        "max_count",
        "min_spend",
        "last_before",
        "49.99",
        "category",
        "30d",
        "0",
        "2",
        "x",
        "é",
        "\x00",
        "-",
    ]
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(alphabet, max_size=30).map(" ".join), st.lists(alphabet).map("".join)))
def test_no_input_raises_anything_but_a_positioned_syntax_error(text):
    try:
        node = parse(text)
    except SegmentSyntaxError as error:
        assert error.offset is not None and 0 <= error.offset <= len(text)
        assert error.found
        return
    assert parse(to_text(node)) == node


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["and", "or", "not", "tag", "segment", "action", "family", "value", "within", "min_count", "x"]
            ),
            children,
            max_size=3,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_no_json_raises_anything_but_a_syntax_error_with_a_path(data):
    try:
        from_json(data)
    except SegmentSyntaxError as error:
        assert isinstance(error.position, str) and error.position.startswith("$")
