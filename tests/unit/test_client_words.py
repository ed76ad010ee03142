"""Pure helpers of the CLI: reasons in product words, sheet columns and date forms."""

from __future__ import annotations

import pytest

from client.errors import InvalidValue
from client.importing import date_format, detect_date_format, parse_columns
from client.session import check_fields, product_words


@pytest.mark.parametrize(
    ("field", "reason", "said"),
    [
        ("body.title", "Expected `str` of length <= 200", "title must be at most 200 characters"),
        ("body.title", "Expected `str` of length >= 1", "title must not be empty"),
        ("body.weight", "Expected `float` > 0.0", "weight must be greater than 0"),
        ("body.percent", "Expected `float` <= 100", "percent must be at most 100"),
        ("body.due_on", "Expected `date`, got `str`", "due date: Expected date, got str"),
        ("body.cycle", "Expected `str` matching regex '^(?!0000)...'",
         "cycle must be a cycle such as 2026, 2026-H1, 2026-Q1 or 2026-03"),
        ("body.partners[0]", "Expected `str` matching regex 'x'",
         "partners must be lowercase names (letters, digits, - and _, starting with a letter)"),
        ("body.stages", "Expected `array` of length <= 50", "stages must be at most 50 entries"),
    ],
)  # fmt: skip
def test_product_words(field: str, reason: str, said: str) -> None:
    assert product_words(field, reason) == said
    assert "regex" not in product_words(field, reason)


def test_check_fields_refuses_non_finite_numbers_and_line_breaks() -> None:
    check_fields({"title": "One line", "value": 3.5, "note": "two\nlines are fine in a note"})
    for bad in ({"value": float("inf")}, {"target": float("nan")}):
        with pytest.raises(InvalidValue, match="not a finite number"):
            check_fields(bad)
    for text in ("a\nb", "a\tb", "a\x00b", "a\u2028b"):
        with pytest.raises(InvalidValue, match="one line"):
            check_fields({"title": text})
    with pytest.raises(InvalidValue, match="one line"):
        check_fields({"stages": ("fine", "not\nfine")})


def test_parse_columns() -> None:
    assert parse_columns('date=Week,observation="What happened, exactly",impact=+/-') == {
        "date": "Week",
        "observation": "What happened, exactly",
        "impact": "+/-",
    }
    with pytest.raises(InvalidValue, match="FIELD=HEADER"):
        parse_columns("date")


def test_date_forms_detected_or_refused_when_ambiguous() -> None:
    assert detect_date_format(["2026-03-02", "2026-03-09"]) == "%Y-%m-%d"
    assert detect_date_format(["13/2/2026", "3/2/2026"]) == "%d/%m/%Y"
    assert detect_date_format(["2/13/2026", "3/2/2026"]) == "%m/%d/%Y"
    assert detect_date_format(["2.3.2026"]) == "%d.%m.%Y"
    with pytest.raises(InvalidValue, match="can be read as DD/MM/YYYY or MM/DD/YYYY"):
        detect_date_format(["3/2/2026", "4/2/2026"])
    with pytest.raises(InvalidValue, match="no known form"):
        detect_date_format(["soon"])
    assert date_format("dd/mm/yyyy") == "%d/%m/%Y"
    assert date_format("%d/%m/%y") == "%d/%m/%y"
    with pytest.raises(InvalidValue, match="unknown --date-format"):
        date_format("the usual")
