"""The builder's conversion functions (static/portal/segment-language.js) against the server's language, as a
property: for generated expressions, the server's JSON form read into the builder's tree and rendered back gives
exactly the server's canonical text. The functions run in Chromium, where the builder runs them.

Also for trees shaped as the builder leaves them (groups of one, groups nested in a group of the same kind,
empty groups): the builder's text is what the server makes of the same JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.segment_builder import action_arguments
from segments.language import (
    ACTIONS,
    LIKELY_BANDS,
    And,
    LikelyTerm,
    Not,
    Or,
    SegmentSyntaxError,
    SegmentTerm,
    TagTerm,
    from_json,
    parse,
    to_json,
    to_text,
)
from tests.segments.test_language import _normal, action_terms

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "platform" / "portal" / "static" / "portal" / "segment-language.js"

# Characters where JavaScript and Python disagree about white space, quotes, escapes, keywords.
AWKWARD = [
    "\x1c",
    "\x1f",
    "\x85",
    "\ufeff",
    "\u00a0",
    "\u3000",
    " ",
    '"',
    "'",
    "\\",
    "(",
    ")",
    ":",
    ",",
    "=",
    "é",
    "😀",
]
values = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8),
    st.lists(st.sampled_from(AWKWARD + ["a", "B", "1"]), min_size=1, max_size=5).map("".join),
    st.sampled_from(["and", "OR", "Not", "18-24", "SG"]),
)
families = st.sampled_from(["country", "interest", "age_range", "discount_sensitivity"])
# likely_to_buy has no controls in the builder: it is kept whole and must come back exactly (it was dropped).
likely_terms = st.builds(
    lambda which, value, size: LikelyTerm(**{which: value}, **size),
    st.sampled_from(["product", "category"]),
    values,
    st.just({})
    | st.builds(lambda n: {"top": n}, st.integers(1, 10**7))
    | st.sampled_from([{"band": band} for band in LIKELY_BANDS]),
).filter(lambda term: _accepted(term))


def _accepted(term) -> bool:
    """Values the language takes (a product or category that is blank once trimmed is refused)."""
    try:
        from_json(to_json(term))
    except SegmentSyntaxError:
        return False
    return True


terms = (
    st.builds(TagTerm, families, values) | st.builds(SegmentTerm, st.integers(1, 10**12)) | action_terms | likely_terms
)
trees = st.recursive(
    terms,
    lambda children: (
        st.builds(Not, children)
        | st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple))
        | st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple))
    ),
    max_leaves=10,
).map(_normal)


def _variant(text: str, lower: bool, parens: bool) -> str:
    """The same expression as a person might type it: lower-case keywords, redundant parentheses."""
    if lower:
        text = " ".join(w.lower() if w in ("AND", "OR", "NOT") else w for w in text.split(" "))
    return f"( {text} )" if parens else text


@pytest.fixture(scope="module")
def language_page(browser):
    page = browser.new_page()
    page.set_content("<!doctype html><html lang='en'><head><title>language</title></head><body></body></html>")
    page.add_script_tag(content=SCRIPT.read_text())
    yield page
    page.close()


def builder_text(page, definition, vocabulary) -> str:
    return page.evaluate(
        "([json, vocabulary]) => SegmentLanguage.toText(SegmentLanguage.fromJson(json), vocabulary)",
        [definition, vocabulary],
    )


VOCABULARY = {"arguments": list(action_arguments()), "actions": [{"name": a, "label": a} for a in ACTIONS]}


def test_text_to_builder_to_text_is_the_canonical_text(language_page):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(trees, st.booleans(), st.booleans())
    def check(tree, lower, parens):
        typed = _variant(to_text(tree), lower, parens)
        try:
            node = parse(typed)
        except Exception:  # lower-casing a quoted value's keyword-like word cannot make it unparsable, but be safe
            node = tree
        definition = json.loads(json.dumps(to_json(node)))
        assert builder_text(language_page, definition, VOCABULARY) == to_text(node)

    check()


def _builder_shaped(draw, json_node):
    """Wrap parts of a JSON form the way the builder's tree holds them before they are flattened."""
    for key in ("and", "or"):
        if key in json_node:
            items = [_builder_shaped(draw, item) for item in json_node[key]]
            if len(items) > 2 and draw(st.booleans()):
                items = [{key: items[:2]}, *items[2:]]  # a group of the same kind inside
            if draw(st.booleans()):
                items.append({"and": []})  # an empty group, as "Add a group" before its first rule
            return {key: items}
    if "not" in json_node:
        return {"not": _builder_shaped(draw, json_node["not"])}
    if draw(st.booleans()):
        return {draw(st.sampled_from(["and", "or"])): [json_node]}  # a group of one
    return json_node


def test_builder_shaped_trees_render_as_the_server_reads_them(language_page):
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(trees, st.data())
    def check(tree, data):
        shaped = _builder_shaped(data.draw, to_json(tree))
        # The server refuses an empty group; the builder leaves it out of the text, so compare without them.
        server = from_json(json.loads(json.dumps(shaped).replace(', {"and": []}', "").replace('{"and": []}, ', "")))
        assert builder_text(language_page, shaped, VOCABULARY) == to_text(server)

    check()


def test_unknown_arguments_are_kept_after_the_known_ones(language_page):
    definition = {"action": "purchased", "max_spend": 50, "note": 'a "b"', "category": "tents", "min_count": 1}
    text = builder_text(language_page, definition, VOCABULARY)
    assert text == 'purchased(category="tents", max_spend=50, note="a \\"b\\"")'
