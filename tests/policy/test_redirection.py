"""The safety relation between levels and the redirection matrix.

Cases:
- relation table on the default level set: safer-or-equal is SAFE, more approximate is DEGRADED,
  a cache level with K > 0 is NEVER for load without a cache hit (cache-k0 and step levels);
- rows are normalized, dust is dropped, rows sum to 1;
- rows without flow fall back to the level itself, else the nearest safe level with replicas,
  else cache-k0;
- violations() lists only pairs with demand that are not SAFE;
- unplanned load (planned shedding) lands on spare capacity, safe first; without spare capacity it is
  spread to the least possible utilization, rows without a cache hit (which may not use cache-kK
  levels) placed first (Hall's condition on the nested reach sets).
"""

from __future__ import annotations

import pytest

from argus.levels import DEFAULT_LEVELS
from argus.policy.redirection import DEGRADED, NEVER, SAFE, matrix, relation, relation_table, violations

L = DEFAULT_LEVELS  # cache-k0..k25, steps-35, steps-25, steps-20


@pytest.mark.parametrize("src, dst, rel", [
    ("cache-k10", "cache-k5", SAFE), ("cache-k10", "cache-k10", SAFE), ("cache-k10", "cache-k0", SAFE),
    ("cache-k10", "cache-k20", DEGRADED), ("cache-k10", "steps-20", DEGRADED),
    ("steps-25", "steps-35", SAFE), ("steps-25", "cache-k0", SAFE), ("steps-25", "steps-20", DEGRADED),
    ("steps-25", "cache-k25", NEVER), ("cache-k0", "cache-k5", NEVER), ("cache-k0", "steps-35", DEGRADED),
])
def test_relation(src, dst, rel):
    assert relation(L, L.index(src), L.index(dst)) == rel
    assert relation_table(L)[L.index(src)][L.index(dst)] == rel


def test_matrix_normalizes_and_falls_back():
    names = ["cache-k0", "cache-k10", "steps-25"]
    flows = [[2.0, 0.0, 0.0], [1.0, 3.0, 1e-13], [0.0, 0.0, 0.0]]
    p = matrix(names, [2, 1, 0], flows)
    assert p["cache-k0"] == {"cache-k0": 1.0}
    assert p["cache-k10"] == pytest.approx({"cache-k0": 0.25, "cache-k10": 0.75})
    assert p["steps-25"] == {"cache-k0": 1.0}  # no replicas at steps-25: nearest safe level that has some
    assert matrix(names, [1, 1, 1], [[0] * 3] * 3)["steps-25"] == {"steps-25": 1.0}
    assert matrix(names, [0, 0, 0], [[0] * 3] * 3)["cache-k10"] == {"cache-k0": 1.0}


def test_violations():
    names = ["cache-k0", "cache-k10", "steps-25"]
    red = {"cache-k0": {"steps-25": 1.0}, "cache-k10": {"cache-k0": 1.0}, "steps-25": {"cache-k10": 1.0}}
    assert violations(names, red, {"cache-k0": 1.0, "cache-k10": 1.0}) == [("cache-k0", "steps-25")]
    assert violations(names, red, {"steps-25": 1.0}) == [("steps-25", "cache-k10")]


def test_shed_share_goes_to_spare_capacity_not_the_served_level():
    """Planned shedding: the router cannot shed, so the shed share must land on spare capacity.

    Regression for the simulator's finding: cache-k0 planned 0.4 of 0.8 req/s and shed the rest;
    the row used to send all 0.8 to cache-k0 while steps-20 had spare capacity.
    """
    from argus.policy.redirection import matrix

    levels = ["cache-k0", "steps-20"]
    flows = [[0.4, 0.0], [0.0, 1.0]]
    p = matrix(levels, [1, 2], flows, shed=[0.4, 0.0], capacity=[0.4, 2.0])
    assert abs(p["cache-k0"]["cache-k0"] - 0.5) < 1e-9 and abs(p["cache-k0"]["steps-20"] - 0.5) < 1e-9
    assert p["steps-20"] == {"steps-20": 1.0}
    # Without spare capacity anywhere the excess is spread to equal utilization (1.8 / 1.4 each),
    # not piled on the row's served level.
    p = matrix(levels, [1, 1], flows, shed=[0.4, 0.0], capacity=[0.4, 1.0])
    load = [0.8 * p["cache-k0"].get(lv, 0) + 1.0 * p["steps-20"].get(lv, 0) for lv in levels]
    assert load == pytest.approx([0.4 * 1.8 / 1.4, 1.0 * 1.8 / 1.4])
    # Safe spare capacity is used before degraded capacity.
    levels3 = ["cache-k0", "steps-35", "steps-20"]
    p = matrix(levels3, [1, 1, 1], [[0, 0, 0], [0, 0.5, 0], [0, 0, 0]], shed=[0, 0.5, 0], capacity=[1.0, 0.5, 1.0])
    assert p["steps-35"] == {"cache-k0": 0.5, "steps-35": 0.5}


def test_excess_without_spare_respects_reach_sets():
    """A miss row may not use cache-k10: its excess fills cache-k0 and steps-20 to t = 3 / 2."""
    levels = ["cache-k0", "cache-k10", "steps-20"]
    flows = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]
    p = matrix(levels, [1, 1, 1], flows, shed=[1.0, 0.0, 0.0], capacity=[1.0, 1.0, 1.0])
    assert p["cache-k0"] == pytest.approx({"cache-k0": 0.75, "steps-20": 0.25})
    assert "cache-k10" not in p["cache-k0"]
    # A hit row's excess may go anywhere: all three levels end at (3 + 1.5) / 3.
    p = matrix(levels, [1, 1, 1], flows, shed=[0.0, 1.5, 0.0], capacity=[1.0, 1.0, 1.0])
    load = [sum(d * p[src].get(lv, 0) for src, d in zip(levels, [1.0, 2.5, 1.0])) for lv in levels]
    assert load == pytest.approx([1.5, 1.5, 1.5])
