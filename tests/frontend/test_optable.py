"""docs/operators.md is what the op table says now."""
from ftcompile.frontend.optable import DOC, render


def test_committed_operator_table_is_current():
    assert DOC.read_text() == render(), "docs/operators.md is stale: run `python -m ftcompile.frontend.optable`"


def test_table_lists_every_converter_range():
    text = render()
    assert "| Softmax | 1, 11, 13 | 1-12, 13+ |" in text
    assert "| Loop | control flow" in text
