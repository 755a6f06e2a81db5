"""An expression error as the builder draws it without script: the line, a caret under the mistake, why; and the
one shape of the JSON errors the portal's scripts read."""

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from merchants.errors import Conflict, LimitExceeded
from portal.errors import ERROR_WINDOW, ExpressionProblem, json_error, json_error_of


def test_a_short_line_is_shown_whole_with_the_caret_under_the_column():
    problem = ExpressionProblem.from_details("country:SG AND AND", "Expected a term", {"column": 16})
    assert problem.line_text == "country:SG AND AND"
    assert problem.caret == " " * 15 + "^" and problem.where == "column 16"


def test_a_mistake_at_the_end_of_a_long_line_is_on_screen():
    """A caret 1,000 characters to the right was out of sight; the line is cut around the mistake."""
    expression = " OR ".join(f"country:C{i}" for i in range(100)) + " AND AND"
    column = expression.rindex("AND") + 1
    problem = ExpressionProblem.from_details(expression, "Expected a term", {"column": column})
    assert len(problem.line_text) <= ERROR_WINDOW + 2 and problem.line_text.startswith("…")
    assert problem.line_text[problem.column - 1 :].startswith("AND")
    assert problem.where == f"column {column}"  # the column in the whole expression


@given(st.text(alphabet="ab ():", min_size=0, max_size=400), st.integers(1, 402))
def test_the_caret_always_points_at_the_same_character(line, column):
    problem = ExpressionProblem.from_details(line, "x", {"column": column})
    assert len(problem.line_text) <= max(len(line), ERROR_WINDOW + 2)
    if column <= len(line):
        assert problem.line_text[problem.column - 1] == line[column - 1]
    else:
        assert problem.column == len(problem.line_text) + (column - len(line))


def test_a_json_error_carries_the_details_the_scripts_read_and_nothing_else():
    response = json_error(400, "invalid_expression", "Expected a term", {"offset": 0, "column": 1, "raw": "secret"})
    assert response.status_code == 400
    assert json.loads(response.content) == {
        "error": {"code": "invalid_expression", "message": "Expected a term", "offset": 0, "column": 1}
    }


def test_a_services_refusal_is_answered_with_the_apis_status_and_headers():
    conflict = json_error_of(Conflict("Pause it first.", code="invalid_transition", details={"field": "trigger"}))
    assert conflict.status_code == 409
    assert json.loads(conflict.content)["error"] == {
        "code": "invalid_transition",
        "message": "Pause it first.",
        "field": "trigger",
    }
    spent = json_error_of(LimitExceeded("Budget spent.", details={"retry_after_seconds": 60, "renews_at": "x"}))
    assert (spent.status_code, spent["Retry-After"]) == (429, "60")
    assert json.loads(spent.content)["error"]["renews_at"] == "x"


def test_the_portal_views_build_no_json_error_of_their_own():
    views = Path(__file__).resolve().parents[2] / "platform" / "portal" / "views"
    for module in views.glob("*.py"):
        text = module.read_text()
        assert '{"code": code' not in text and "def _json_error" not in text, module.name
        assert 'JsonResponse({"error"' not in text, module.name  # an error of another shape, past json_error


def test_every_json_error_the_portals_scripts_read_has_one_shape(portal_client):
    """The segment editor's and the journey builder's suggestions, the campaign wizard's preview, the estimate and
    the parse: each refusal is {"error": {"code", "message"}}, whose message the scripts show."""
    as_json = {"content_type": "application/json"}
    refusals = {
        "values: no such argument": portal_client.get("/segments/values.json", {"argument": "colour"}),
        "values: no such scope": portal_client.get("/segments/values.json", {"argument": "brand", "scope": "moon"}),
        "preview: not an object": portal_client.post("/campaigns/preview/", "[1]", **as_json),
        "estimate: not JSON": portal_client.post("/segments/estimate/", "{", **as_json),
        "parse: not an object": portal_client.post("/segments/parse/", "[1]", **as_json),
        "journey: not an object": portal_client.post("/journeys/build/save/", "[1]", **as_json),
    }
    for name, response in refusals.items():
        assert response.status_code == 400, name
        error = response.json()["error"]
        assert isinstance(error, dict) and error["code"] == "bad_request", name
        assert isinstance(error["message"], str) and error["message"], name
    assert "argument is one of" in refusals["values: no such argument"].json()["error"]["message"]
