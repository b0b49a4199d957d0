"""Snapshot validation and JSON round trip.

Cases (each bad snapshot raises SnapshotError whose message starts with the field's name):
- negative demand, floor above 100%, empty level set, unknown level in h, h not summing to 1,
  negative h share, unknown level in current/queues, negative queue, min_full_quality above gpus,
  last_change after now, non-integer gpus, zero throughput target, non-positive SLO,
  level set without cache-k0, duplicate level, bad level name, unknown top-level field;
- from_dict(to_dict(s)) == s; levels given by name are looked up in a profile; names without a
  profile are rejected.
"""

from __future__ import annotations

import pytest
from tests.support.snapshots import SDXL, snap

from argus.policy.snapshot import Snapshot, SnapshotError


@pytest.mark.parametrize("over, field", [
    ({"demand": -1.0}, "demand"),
    ({"quality_floor": 100.5}, "quality_floor"),
    ({"profiles": ()}, "levels"),
    ({"h": {"cache-k0": 0.5, "steps-7": 0.5}}, "h"),
    ({"h": {"cache-k0": 0.5, "cache-k5": 0.2}}, "h"),
    ({"h": {"cache-k0": 1.5, "cache-k5": -0.5}}, "h[cache-k5]"),
    ({"current": {"cache-k99": 1}}, "current"),
    ({"current": {"cache-k0": -1}}, "current[cache-k0]"),
    ({"queues": {"model-x": 3.0}}, "queues"),
    ({"queues": {"cache-k0": -3.0}}, "queues[cache-k0]"),
    ({"min_full_quality": 9}, "min_full_quality"),
    ({"last_change": 2000.0}, "last_change"),
    ({"gpus": 2.5}, "gpus"),
    ({"gpus": 0}, "gpus"),
    ({"throughput_target": 0.0}, "throughput_target"),
    ({"latency_slo": 0.0}, "latency_slo"),
    ({"demand": float("nan")}, "demand"),
])
def test_bad_snapshot_names_field(over, field):
    with pytest.raises(SnapshotError) as e:
        snap(**over)
    assert str(e.value).startswith(field + ":") or str(e.value).startswith(field + " "), str(e.value)


def test_level_set_rules():
    with pytest.raises(SnapshotError, match="^levels: must include the full-quality level"):
        snap(levels=["cache-k5", "steps-25"], h={"cache-k5": 1.0})
    dup = tuple(SDXL.select(["cache-k0", "cache-k0"]))
    with pytest.raises(SnapshotError, match=r"^levels\[1\]: level 'cache-k0' appears twice"):
        snap(profiles=dup, h={"cache-k0": 1.0})


def test_round_trip_and_name_lookup():
    s = snap(current={"cache-k0": 3, "cache-k25": 2}, queues={"cache-k0": 4.0}, last_change=900.0)
    assert Snapshot.from_dict(s.to_dict()) == s
    raw = s.to_dict()
    raw["levels"] = [p["level"] for p in raw["levels"]]
    assert Snapshot.from_dict(raw, profile=SDXL) == s
    with pytest.raises(SnapshotError, match=r"^levels\[0\]: 'cache-k0' given by name but no profile"):
        Snapshot.from_dict(raw)


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("demand"), "demand: is required"),
    (lambda r: r.update(colour="red"), "colour: unknown field"),
    (lambda r: r.update(levels=[{"level": "bogus-1"}]), "levels[0]"),
    (lambda r: r.update(hysteresis={"min_dwell_s": -1}), "hysteresis.min_dwell_s"),
    (lambda r: r.update(h=[0.5, 0.5]), "h: must be an object"),
])
def test_bad_json_names_field(mutate, field):
    raw = snap().to_dict()
    mutate(raw)
    with pytest.raises(SnapshotError) as e:
        Snapshot.from_dict(raw)
    assert str(e.value).startswith(field), str(e.value)
