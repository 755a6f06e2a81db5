"""The visual rule builder in a real browser: a second view of the expression, opened on a saved segment's
definition, kept in step with the text both ways, with undo, and never losing a rule or the merchant's text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from merchants.models import Role
from segments.models import Segment
from segments.services import segment_create
from tests.e2e.conftest import LAPTOP, TABLET
from tests.factories import ProductFactory, member_create
from tests.portal.conftest import Population

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
PASSWORD = "marketer-pass-123"
TENTS = 'purchased(category="tents", within="30d", min_count=2)'


@pytest.fixture
def shop(browsing, merchant, approve_activity):
    """A marketer of `merchant`, a small tagged population and two saved segments; signed in."""
    approve_activity("tagging")
    Population().build(
        300,
        {
            ("country", "SG"): range(200),
            ("country", "MY"): range(200, 300),
            ("interest", "outdoor"): range(150),
            ("interest", "sports"): range(100, 250),
            ("age_range", "18-24"): range(0, 300, 2),
            ("age_range", "25-34"): range(1, 300, 2),
        },
        consented=range(150),
    )
    ProductFactory(merchant=merchant, sku="tent-1", category_path="tents/dome", brand="Aether")
    member_create(merchant=merchant, role=Role.MARKETER, username="marketer", password=PASSWORD)
    base = segment_create(merchant=merchant, name="Young", expression="age_range:18-24", actor="test")
    saved = segment_create(
        merchant=merchant,
        name="Outdoor SG",
        expression=f"country:SG AND (interest:outdoor OR NOT segment:{base.pk}) AND {TENTS}",
        actor="test",
    )
    browsing.sign_in("marketer", PASSWORD)
    browsing.saved = saved
    browsing.base = base
    return browsing


def rules(page):
    return page.locator("[data-builder-tree] .rb-rule")


def shoot_all_sizes(browsing, name: str) -> None:
    for label, size in (("laptop", LAPTOP), ("tablet", TABLET), ("phone", PHONE)):
        browsing.page.set_viewport_size(size)
        browsing.shot(f"{name}_{label}")
        width = browsing.page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{name} scrolls sideways at {size['width']} px ({width} px wide)"
    browsing.page.locator("[data-rule-builder]").scroll_into_view_if_needed()
    browsing.shot(f"{name}_phone_rules", full_page=False)
    browsing.page.set_viewport_size(LAPTOP)


def test_round_trip_on_a_saved_segment(shop):
    browsing, page = shop, shop.page
    saved = shop.saved
    browsing.goto(f"/segments/{saved.pk}/edit/")
    editor = page.get_by_label("Who is in it")
    builder = page.locator("[data-rule-builder]")
    # The saved definition is loaded into the builder: three rules at the top, one group of two inside.
    expect(rules(page)).to_have_count(4)
    top = builder.get_by_role("group", name="All rules")
    expect(top.get_by_label("Match consumers who meet")).to_have_value("and")
    group = builder.get_by_role("group", name="Group 2")
    expect(group.get_by_label("Match", exact=True)).to_have_value("or")
    excluded = group.get_by_role("group", name="Rule 2.2")
    expect(excluded.get_by_label("Include")).to_have_value("not")
    expect(excluded.get_by_label("Segment")).to_have_value(str(shop.base.pk))
    action = builder.get_by_role("group", name="Rule 3")
    expect(action.get_by_label("Did")).to_have_value("purchased")
    expect(action.get_by_label("Category", exact=True)).to_have_value("tents")
    expect(action.get_by_label("At least (times)", exact=True)).to_have_value("2")
    shoot_all_sizes(browsing, "builder_saved_segment")

    # Edit in the builder: the text follows, in canonical form.
    group.get_by_label("Match", exact=True).select_option("and")
    expect(editor).to_have_value(f"country:SG AND interest:outdoor AND NOT segment:{shop.base.pk} AND {TENTS}")
    action.get_by_label("Add a condition").select_option("brand")
    action.get_by_label("Brand", exact=True).fill("Aether")
    # Values are suggested: brands the merchant may target, and each tag value with its released reach.
    expect(page.locator("#rb-suggest-brand option")).to_have_count(1)
    expect(page.locator("#rb-values-country option[value=SG]")).to_have_attribute("label", re.compile("reach"))
    with_brand = r'purchased\(category="tents", brand="Aether", within="30d", min_count=2\)$'
    expect(editor).to_have_value(re.compile(with_brand))

    # Edit in the text: the builder follows.
    editor.fill("age_range:25-34 OR (country:MY AND NOT interest:sports)")
    expect(rules(page)).to_have_count(3)
    expect(builder.get_by_role("group", name="All rules").get_by_label("Match consumers who meet")).to_have_value("or")
    expect(builder.get_by_role("group", name="Rule 2.2").get_by_label("Include")).to_have_value("not")

    # Undo, by keyboard and by button: back to what the builder had made, then one more step.
    page.get_by_role("group", name="Rule 1").get_by_label("Value").focus()
    page.keyboard.press("Control+z")
    expect(editor).to_have_value(re.compile(r'brand="Aether"'))
    expect(rules(page)).to_have_count(4)
    page.get_by_role("button", name="Undo").click()
    expect(editor).not_to_have_value(re.compile("Aether"))
    page.get_by_role("button", name="Redo").click()
    expect(editor).to_have_value(re.compile(r'brand="Aether"'))
    built = editor.input_value()

    # Add a rule to the inner group by keyboard; save; reload: the definition is what was built.
    page.locator(".rb-root > .rb-actions").get_by_role("button", name="Add a rule").focus()
    page.keyboard.press("Enter")
    expect(rules(page)).to_have_count(5)
    new_rule = builder.get_by_role("group", name="Rule 4")
    new_rule.get_by_label("Family").select_option("country")
    new_rule.get_by_label("Value").fill("MY")
    built = built + " AND country:MY"
    expect(editor).to_have_value(built)
    # Nothing in flight first: on SQLite the live server shares one connection between its threads.
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Outdoor SG")
    browsing.goto(f"/segments/{saved.pk}/edit/")
    expect(page.get_by_label("Who is in it")).to_have_value(built)
    expect(rules(page)).to_have_count(5)
    assert Segment.objects.get(pk=saved.pk).definition == built


def test_changing_a_rules_family_or_kind_keeps_the_rule(shop):
    browsing, page = shop, shop.page
    browsing.goto("/segments/new/")
    editor = page.get_by_label("Who is in it")
    builder = page.locator("[data-rule-builder]")
    builder.get_by_role("button", name="Add a rule").click()
    rule = builder.get_by_role("group", name="Rule 1")
    rule.get_by_label("Family").select_option("age_range")
    rule.get_by_label("Value").fill("25-34")
    expect(editor).to_have_value("age_range:25-34")
    builder.get_by_role("button", name="Add a rule").click()
    second = builder.get_by_role("group", name="Rule 2")
    second.get_by_label("Family").select_option("country")
    second.get_by_label("Value").fill("SG")
    expect(editor).to_have_value("age_range:25-34 AND country:SG")

    # A family without that value: the rule stays, its value is marked, and the text still has it.
    rule.get_by_label("Family").select_option("interest")
    expect(rules(page)).to_have_count(2)
    expect(editor).to_have_value("interest:25-34 AND country:SG")
    expect(rule.get_by_label("Value")).to_have_attribute("aria-invalid", "true")
    expect(rule).to_contain_text("Not a value of interest")
    browsing.shot("builder_family_changed")
    rule.get_by_label("Value").fill("outdoor")
    expect(editor).to_have_value("interest:outdoor AND country:SG")

    # Kind changes keep the rule too, and changing back restores what it was.
    second.get_by_label("Kind").select_option("action")
    expect(rules(page)).to_have_count(2)
    expect(editor).to_have_value('interest:outdoor AND purchased(within="30d")')
    second.get_by_label("Kind").select_option("tag")
    expect(editor).to_have_value("interest:outdoor AND country:SG")

    # Removing a rule is a step Undo takes back.
    second.get_by_role("button", name="Remove rule 2").click()
    expect(rules(page)).to_have_count(1)
    expect(editor).to_have_value("interest:outdoor")
    expect(page.get_by_role("status").filter(has_text="Removed")).to_have_count(1)
    page.keyboard.press("Control+z")
    expect(rules(page)).to_have_count(2)
    expect(editor).to_have_value("interest:outdoor AND country:SG")


def test_unparsable_text_keeps_the_rules_and_the_text(shop):
    browsing, page = shop, shop.page
    browsing.goto(f"/segments/{shop.saved.pk}/edit/")
    editor = page.get_by_label("Who is in it")
    expect(rules(page)).to_have_count(4)
    broken = "country:SG AND (interest:outdoor OR"
    editor.fill(broken)
    problem = page.locator("[data-builder-problem]")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("column 36")
    caret = page.locator("#expr-error")
    expect(caret).to_be_visible()
    expect(caret).to_contain_text(broken + "\n" + " " * 35 + "^")
    # The builder keeps the last good tree, and does not overwrite the text.
    expect(rules(page)).to_have_count(4)
    expect(editor).to_have_value(broken)
    shoot_all_sizes(browsing, "builder_unparsable")
    editor.press_sequentially(" interest:sports)")
    expect(problem).to_be_hidden()
    expect(rules(page)).to_have_count(3)


def test_typing_after_signing_out_in_another_tab_says_to_sign_in_again_with_no_caret(shop):
    browsing, page = shop, shop.page
    browsing.goto("/segments/new/")
    other_tab = browsing.context.new_page()
    other_tab.goto(browsing.url("/"))
    other_tab.get_by_role("button", name="Sign out").click()
    other_tab.wait_for_url("**/login/")
    other_tab.close()

    page.get_by_label("Who is in it").fill("country:SG AND interest:outdoor")

    problem = page.locator("[data-builder-problem]")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("Sign in again")
    expect(problem).not_to_contain_text("does not read correctly")  # the text is fine: the session is not
    expect(page.locator("[data-estimate-status]")).to_contain_text("Sign in again")
    expect(page.locator("#expr-error")).to_be_hidden()
    expect(page.get_by_label("Who is in it")).to_have_value("country:SG AND interest:outdoor")
    shoot_all_sizes(browsing, "signed_out")
