"""A covering selection of test cases: every pair of values of any two factors appears in at
least one case (greedy all-pairs), instead of the full product."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def _pairs(case: tuple) -> set[tuple]:
    return {(i, case[i], j, case[j]) for i, j in itertools.combinations(range(len(case)), 2)}


def all_pairs(factors: Sequence[Sequence]) -> list[tuple]:
    """Cases from the product of ``factors`` covering every value pair; deterministic."""
    product = list(itertools.product(*factors))
    uncovered = set().union(*(_pairs(c) for c in product))
    chosen = []
    while uncovered:
        best = max(product, key=lambda c: len(_pairs(c) & uncovered))  # first of the best
        chosen.append(best)
        uncovered -= _pairs(best)
    return chosen
