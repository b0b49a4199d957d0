"""The prompt grammar and the renderer (argus.world.grammar, argus.world.render).

Cases:
- at least 50,000 distinct prompt texts, six tasks, >= 4 shapes and >= 6 colours;
- the train / held-out split is a fixed function of the text (~10 % held out, disjoint, complete);
- parse round-trips every prompt of a large sample (and every scene), tolerates case, spacing and a
  final period, and returns None for free-form text;
- sample() spreads prompts evenly over tasks and draws from the asked split;
- render is deterministic per seed and varies across seeds;
- every layout satisfies its scene: the stated shapes, counts and colours, inside the image,
  boxes GAP apart (masks disjoint), and for position scenes `relation_holds` on the centres.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from argus.world import grammar, render
from argus.world.grammar import COLOURS, SHAPES, TASKS, all_prompts, parse, prompts_of, split_of


def test_enough_distinct_prompts():
    texts = [p.text for p in all_prompts()]
    assert len(set(texts)) == len(texts) >= 50_000
    assert {p.scene.task for p in all_prompts()} == set(TASKS)
    assert len(SHAPES) >= 4 and len(COLOURS) >= 6


def test_split_fixed_and_disjoint():
    train, held = prompts_of("train"), prompts_of("held_out")
    assert len(train) + len(held) == len(all_prompts())
    assert not {p.text for p in train} & {p.text for p in held}
    assert 0.09 <= len(held) / len(all_prompts()) <= 0.11
    # pinned: a model trained on the train split must never see these texts, whatever the code becomes
    assert len(held) == 6092
    digest = hashlib.sha256("\n".join(p.text for p in held).encode()).hexdigest()
    assert digest == "48a7538092d382654b862ec4373971bbecac06a784653ad80957416517a7206c"
    assert split_of("a picture of a circle") == "held_out" and split_of("a photo of a circle") == "train"
    # every task is present in the held-out split
    assert {p.scene.task for p in held} == set(TASKS)


def test_parse_round_trips():
    prompts = all_prompts()
    idx = np.random.default_rng(0).choice(len(prompts), 6000, replace=False)
    for i in idx:
        assert parse(prompts[i].text) == prompts[i].scene, prompts[i].text
    for scenes in grammar.scenes_by_task().values():
        for sc in scenes:
            assert parse(sc.text()) == sc


def test_parse_tolerates_case_space_period_and_refuses_free_form():
    want = grammar.Scene("position", (grammar.Group("circle", 1, "red"), grammar.Group("square")), "left of")
    assert parse("  A photo of a RED circle   to the left of a square. ") == want
    for text in ("a cat on a sofa", "", "a photo of five circles", "a photo of a circle and",
                 "a photo of a red circle behind a square", "a photo of a magenta circle"):
        assert parse(text) is None, text


def test_sample_even_over_tasks_and_from_split():
    got = grammar.sample(np.random.default_rng(0), "held_out", 600)
    assert Counter(p.scene.task for p in got) == {t: 100 for t in TASKS}
    assert all(p.split == "held_out" for p in got)


def test_render_deterministic_per_seed():
    sc = parse("three blue squares")
    a, b = render.render(sc, 7), render.render(sc, 7)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render.render(sc, 8))


def _groups_match(scene, objs):
    want = Counter((g.shape, g.colour) for g in scene.groups for _ in range(g.count))
    got = Counter()
    for o in objs:
        # an object of an uncoloured group may have any colour
        key = (o.shape, o.colour) if (o.shape, o.colour) in want else (o.shape, None)
        got[key] += 1
    return got == want


@pytest.mark.parametrize("task", TASKS)
def test_every_layout_satisfies_its_scene(task):
    scenes = grammar.scenes_by_task()[task]
    rng = np.random.default_rng(1)
    for k in range(60):
        sc = scenes[int(rng.integers(len(scenes)))]
        seed = int(rng.integers(1 << 30))
        objs = render.layout(sc, seed)
        assert len(objs) == sc.n_objects and _groups_match(sc, objs), (sc, objs)
        lo, hi = render.R_BY_COUNT[sc.n_objects]
        for o in objs:
            assert lo <= o.r <= hi  # as large as the scene leaves room for
            assert render.MARGIN + o.r <= o.cx <= render.SIZE - 1 - render.MARGIN - o.r
            assert render.MARGIN + o.r <= o.cy <= render.SIZE - 1 - render.MARGIN - o.r
        for a, b in combinations(objs, 2):
            need = a.r + b.r + render.GAP
            assert abs(a.cx - b.cx) >= need or abs(a.cy - b.cy) >= need
            assert not (render.shape_mask(a.shape, a.cx, a.cy, a.r) & render.shape_mask(b.shape, b.cx, b.cy, b.r)).any()
        if sc.task == "position":
            a, b = objs
            assert render.relation_holds((a.cx, a.cy), (b.cx, b.cy), sc.relation)
        img = render.render(sc, seed)
        assert tuple(img[0, 0]) == render.background(seed)
