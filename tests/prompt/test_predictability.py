"""bench/bench_predictability.py: whether a prompt's loss at a level is its own or its image seed's.

Cases: a loss that is the prompt's (the same at every seed) retests at r = 1 and placing by another seed's loss
gains what the same seed's does; a loss drawn afresh per seed retests near 0 and gains nothing from another
seed's (the same seed's in-sample gain is luck); placement gains are measured against random placement.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from argus.prompt.profile_data import header_line

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_predictability", ROOT / "bench" / "bench_predictability.py")
bp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bp)

N = 200


def _profile(path: Path, loss: np.ndarray, seed: int) -> Path:
    head = header_line(model="m", steps=20, levels=["cache-k0", "steps-5"], encoder="e", scorer="exact",
                       score_kind="exact", height=64, width=64, seed=seed, prompts_sha256="x", n_prompts=N,
                       batch_sizes=[1])
    lines = [json.dumps(head)]
    for i, x in enumerate(loss):
        lines.append(json.dumps({"type": "prompt", "i": i, "prompt": f"prompt {i}", "seed": seed + i,
                                 "scores": {"cache-k0": 100.0, "steps-5": 100.0 - float(x)},
                                 "quality": {"cache-k0": 100.0, "steps-5": 100.0 - float(x)}}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_loss_that_is_the_prompts_own_retests_and_another_seed_places_as_well(tmp_path):
    own = np.where(np.arange(N) % 4 == 0, 40.0, 0.0)  # a quarter of the prompts lose 40 points, every seed
    a, b = _profile(tmp_path / "a.jsonl", own, 0), _profile(tmp_path / "b.jsonl", own, 1000)
    prompts, L = bp.losses([a, b], "steps-5")
    assert len(prompts) == N and np.corrcoef(L[0], L[1])[0, 1] == pytest.approx(1.0)
    # half the traffic at steps-5: random placement loses 0.5 x 10 = 5 points, the robust half loses none
    assert bp.placement_gain(L[0], L[1], 0.5) == pytest.approx(5.0)
    assert bp.placement_gain(L[1], L[1], 0.5) == pytest.approx(5.0)


def test_a_loss_of_the_seed_does_not_retest_and_another_seeds_loss_buys_nothing(tmp_path):
    rng = np.random.default_rng(0)
    draws = [np.where(rng.random(N) < 0.25, 40.0, 0.0) for _ in range(2)]  # each seed fails other prompts
    paths = [_profile(tmp_path / f"{k}.jsonl", d, 1000 * k) for k, d in enumerate(draws)]
    _, L = bp.losses(paths, "steps-5")
    assert abs(np.corrcoef(L[0], L[1])[0, 1]) < 0.2
    assert abs(bp.placement_gain(L[0], L[1], 0.5)) < 1.5  # about nothing
    assert bp.placement_gain(L[1], L[1], 0.5) > 4.0  # in-sample: the seed's own luck looks like knowledge


def test_the_script_prints_and_writes_its_table_and_plot(tmp_path, capsys):
    rng = np.random.default_rng(1)
    paths = [_profile(tmp_path / f"{k}.jsonl", np.where(rng.random(N) < 0.2, 30.0, 0.0), k) for k in range(2)]
    assert bp.main([*map(str, paths), "--levels", "steps-5", "--no-ridge", "--out", str(tmp_path / "p")]) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["levels"]["steps-5"]["prompts"] == N and (tmp_path / "p.png").stat().st_size > 0
    assert "test-retest r" in capsys.readouterr().out


def test_profiles_of_different_prompts_are_refused(tmp_path):
    a = _profile(tmp_path / "a.jsonl", np.zeros(N), 0)
    text = (tmp_path / "a.jsonl").read_text().replace('"prompt ', '"other ')
    (tmp_path / "b.jsonl").write_text(text)
    with pytest.raises(SystemExit, match="profile the same prompts"):
        bp.main([str(a), str(tmp_path / "b.jsonl"), "--levels", "steps-5", "--no-ridge", "--out", str(tmp_path / "p")])
