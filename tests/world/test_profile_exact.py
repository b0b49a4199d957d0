"""`argus profile --scorer exact`: the world's exact scorer as a profile scorer beside CLIPScore.

Cases:
- a profile of world prompts with the real tiny pipeline: header names the exact scorer, every
  score is 0-100, full quality is 100 and every other level's quality follows the exact rule
  100 x min(1, score / full score) (100 when the full image scores 0);
- refused before any model loads: a prompt outside the grammar (the message names it), and
  --scorer-weights with --scorer exact;
- world prompt sets: deterministic, tasks evenly, from the named split.
"""

from __future__ import annotations

from collections import Counter

import pytest

from argus.cli import main
from argus.prompt.profile_data import read_profile
from argus.world.grammar import TASKS, parse, split_of
from argus.world.prompt_sets import world_prompts


@pytest.mark.timeout(600)  # loads the tiny pipeline and MiniLM: ~100 s on the shared 2-core machine, more under load
def test_profile_with_exact_scorer(tmp_path):
    import torch

    out = tmp_path / "exact.jsonl"
    threads = torch.get_num_threads()
    try:
        rc = main(["profile", "--scorer", "exact", "--prompts", "world-held-out", "--limit", "4", "--steps", "4",
                   "--levels", "cache-k0,cache-k2", "--height", "32", "--width", "32", "--batch-sizes", "1",
                   "--repeats", "1", "--no-warmup", "--threads", "1", "--no-progress", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    prof = read_profile(out)
    assert prof.header["score_kind"] == "exact" and prof.header["scorer"] == "exact:world"
    assert len(prof.prompts) == 4
    for rec in prof.prompts.values():
        assert parse(rec.prompt) is not None and split_of(rec.prompt) == "held_out"
        full = rec.scores["cache-k0"]
        assert rec.quality["cache-k0"] == 100.0
        for lv, s in rec.scores.items():
            assert 0.0 <= s <= 100.0
            want = 100.0 if s >= full else 100.0 * s / full
            assert rec.quality[lv] == pytest.approx(want)


def test_profile_exact_refuses_free_form_prompts(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\nan astronaut riding a horse\n")
    rc = main(["profile", "--scorer", "exact", "--prompts", str(prompts), "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "outside the world's grammar" in err and "astronaut" in err
    rc = main(["profile", "--scorer", "exact", "--scorer-weights", str(tmp_path), "--prompts", "world-train",
               "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "--scorer-weights" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_world_prompt_sets():
    a = world_prompts("world-train", 60, seed=3)
    assert a == world_prompts("world-train", 60, seed=3) and a != world_prompts("world-train", 60, seed=4)
    assert Counter(parse(p).task for p in a) == {t: 10 for t in TASKS}
    assert all(split_of(p) == "train" for p in a)
    with pytest.raises(ValueError, match="unknown world prompt set"):
        world_prompts("world-test", 5)
