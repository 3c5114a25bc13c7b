"""The one selection rule (search/selection.py): the simplest candidate within one standard error of the best."""
from types import SimpleNamespace as S

import pytest

from ftcompile.search.selection import simplest_within_one_se


@pytest.mark.parametrize("scores,chosen", [
    ([(0.80, 0.01)], 0),
    ([(0.80, 0.01), (0.8099, 0.01)], 0),            # the better one wins by less than its standard error: a tie
    ([(0.80, 0.01), (0.8101, 0.01)], 1),            # ... and by a hair more: chosen
    ([(0.70, 0.01), (0.80, 0.02), (0.81, 0.02)], 1),  # the best's own error is the margin, not the simplest's
    ([(0.90, 0.00), (0.80, 0.05)], 0),              # the simplest is the best
    ([(0.50, 0.01), (0.60, 0.01), (0.90, 0.01)], 2),
])
def test_simplest_within_one_standard_error_of_the_best(scores, chosen):
    assert simplest_within_one_se([S(mean=m, stderr=e) for m, e in scores]) == chosen


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError):
        simplest_within_one_se([])
