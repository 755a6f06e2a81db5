"""An expression error as the builder draws it without script: the line, a caret under the mistake, why."""

from hypothesis import given
from hypothesis import strategies as st

from portal.errors import ERROR_WINDOW, ExpressionProblem


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
