"""Level profiles: the bundled SDXL profile and the loader's errors.

Cases:
- the bundled profile restates ARGUS.md: per-GPU q/min 23.6..47.1 (as req/s), quality 100..91.52%,
  SDXL load time 47 s, service time 84 ms x steps run;
- step-reduction levels exist and are labelled as assumptions;
- load_profile errors name the file and the field: missing file, bad JSON, negative throughput,
  quality above 100, duplicate level;
- Profile.get on an unknown level raises ProfileError.
"""

from __future__ import annotations

import json

import pytest

from argus.policy.profile import ProfileError, load_default_profile, load_profile

PUBLISHED_QPM = {0: 23.6, 5: 26.2, 10: 29.5, 15: 33.7, 20: 39.3, 25: 47.1}
PUBLISHED_Q = {0: 100.0, 5: 97.05, 10: 95.81, 15: 94.38, 20: 93.24, 25: 91.52}


def test_bundled_profile_restates_published_numbers():
    p = load_default_profile()
    for k, qpm in PUBLISHED_QPM.items():
        lp = p.get(f"cache-k{k}")
        assert lp.peak_throughput == pytest.approx(qpm / 60, rel=1e-4)
        assert lp.quality == PUBLISHED_Q[k]
        assert lp.load_time == 47.0
        assert lp.service_time == pytest.approx(0.084 * (50 - k))
        assert lp.model == "sdxl"


def test_step_levels_are_labelled_assumptions():
    p = load_default_profile()
    for name in ("steps-35", "steps-25", "steps-20"):
        lp = p.get(name)
        assert "assumption" in lp.note
        assert lp.service_time == pytest.approx(0.084 * int(name.split("-")[1]))
    assert any("steps-35/25/20" in a for a in p.assumptions)


def _write(tmp_path, doc) -> str:
    path = tmp_path / "prof.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _level(**over):
    lv = {"level": "cache-k0", "throughput": {"1": 0.2, "8": 0.4}, "service_time": 4.2, "quality": 100,
          "model": "m", "load_time": 10}
    lv.update(over)
    return lv


@pytest.mark.parametrize("doc, needle", [
    ("{not json", "not valid JSON"),
    ({"model": "m", "levels": [_level(throughput={"1": -1})]}, "levels[0].throughput[1]"),
    ({"model": "m", "levels": [_level(quality=101)]}, "levels[0].quality"),
    ({"model": "m", "levels": [_level(), _level()]}, "appears twice"),
    ({"model": "m", "levels": []}, "profile.levels"),
    ({"model": "m", "levels": [_level(speed=3)]}, "levels[0].speed: unknown field"),
])
def test_bad_profile_names_file_and_field(tmp_path, doc, needle):
    path = _write(tmp_path, doc)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert path in str(e.value) and needle in str(e.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ProfileError, match="nope.json"):
        load_profile(tmp_path / "nope.json")


def test_unknown_level_lookup():
    with pytest.raises(ProfileError, match="no level 'steps-7'"):
        load_default_profile().get("steps-7")
