"""The exact scorer (argus.world.scorer). Named test_exact_scorer.py: tests/ has no __init__.py files,
so a second test_scorer.py (tests/prompt/) would clash under pytest's default import mode.

Cases:
- accuracy on rendered images: ground truth judged fully correct (>= 99 %), corrupted ones caught
  (>= 98 %), both clean and blurred + noisy (150 + 150 each, tasks evenly);
- each constraint kind fails alone when only it is broken: present, colour, count, colour of a
  counted group, relation, binding (color_attr), total (an extra object); the score is the share;
- shapes and colours of single objects at every size and colour, also blurred; a colour drifted
  40 % toward its palette neighbour stays one object; touching objects of distant colours are two;
- an empty or noisy grey image has no objects, a tinted background none either; a 2x upscaled
  image gets the same verdict;
- a free-form prompt is not scorable (no exception), and ExactScorer gives NaN for it;
- the relative quality rule (cap at 1, full score 0), and the profile-facing ExactScorer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from argus.world import corrupt, grammar, render, scorer
from argus.world.grammar import COLOURS, SHAPES, parse
from argus.world.render import Obj, draw

BG = (128, 128, 128)


def obj(shape: str, colour: str, cx: float, cy: float, r: float = 8) -> Obj:
    return Obj(shape, colour, COLOURS[colour], cx, cy, r)


def verdict(objs: list[Obj], prompt: str) -> scorer.ScoreResult:
    return scorer.score_image(draw(objs, BG), prompt)


def failed(res: scorer.ScoreResult) -> list[str]:
    return [c.kind for c in res.constraints if not c.satisfied]


def _prompts(n: int, seed: int) -> list[grammar.Prompt]:
    return grammar.sample(np.random.default_rng(seed), "held_out", n)


@pytest.mark.parametrize("degraded", [False, True])
def test_accuracy_on_rendered_and_corrupted_images(degraded):
    prompts = _prompts(150, seed=11 + degraded)
    right = caught = 0
    kinds = set()
    for i, p in enumerate(prompts):
        seed = 5000 + i
        img = render.render(p.scene, seed)
        kind, bad = corrupt.corrupted(p.scene, seed)
        kinds.add(kind)
        if degraded:
            img = corrupt.degrade(img, np.random.default_rng(seed))
            bad = corrupt.degrade(bad, np.random.default_rng(seed + 1))
        right += scorer.score_image(img, p.text).correct
        caught += not scorer.score_image(bad, p.text).correct
    assert right / len(prompts) >= 0.99, right
    assert caught / len(prompts) >= 0.98, caught
    assert kinds == set(corrupt.KINDS)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("r", [render.R_MIN, render.R_MAX])
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_every_shape_colour_and_size(shape, r, sigma):
    for k, colour in enumerate(COLOURS):
        img = draw([obj(shape, colour, 20 + k * 3, 30, r)], BG)
        if sigma:
            img = corrupt.degrade(img, np.random.default_rng(k), blur_sigma=sigma, noise=4)
        found = scorer.detect(img)
        assert [(o.shape, o.colour) for o in found] == [(shape, colour)], found


def test_present_and_colour():
    res = verdict([obj("square", "red", 30, 30)], "a photo of a red circle")
    assert failed(res) == ["present"] and res.score == pytest.approx(200 / 3)
    res = verdict([obj("circle", "blue", 30, 30)], "a photo of a red circle")
    assert failed(res) == ["colour"] and "blue circle" in res.constraints[1].detail
    res = verdict([obj("circle", "red", 30, 30)], "a photo of a red circle")
    assert res.correct and res.score == 100.0 and res.task == "colors"


def test_count_exact_and_colour_of_every_counted_object():
    three = [obj("triangle", "green", 12, 12), obj("triangle", "green", 40, 12), obj("triangle", "green", 25, 45)]
    assert verdict(three, "three green triangles").correct
    assert failed(verdict(three[:2], "three green triangles")) == ["count", "total"]
    assert failed(verdict(three, "two green triangles")) == ["count", "total"]
    odd = three[:2] + [obj("triangle", "pink", 25, 45)]
    res = verdict(odd, "three green triangles")
    assert failed(res) == ["colour"] and "pink" in res.constraints[1].detail
    assert verdict(odd, "three triangles").correct  # no colour stated


def test_relation_both_ways():
    left = [obj("circle", "red", 14, 30), obj("square", "blue", 48, 34)]
    assert verdict(left, "a red circle to the left of a blue square").correct
    assert failed(verdict(left, "a red circle to the right of a blue square")) == ["relation"]
    assert failed(verdict(left, "a red circle above a blue square")) == ["relation"]
    stacked = [obj("circle", "red", 30, 50), obj("square", "blue", 34, 14)]
    assert verdict(stacked, "a red circle below a square").correct
    # same shape: the colour decides which circle is which
    pair = [obj("circle", "red", 14, 30), obj("circle", "blue", 48, 30)]
    assert verdict(pair, "a blue circle to the right of a circle").correct
    # wrong side: either the relation fails or the circle on the left is not blue (equally good matches)
    assert failed(verdict(pair, "a blue circle to the left of a circle")) in (["relation"], ["colour"])


def test_attribute_binding():
    good = [obj("circle", "red", 14, 30), obj("square", "blue", 48, 30)]
    assert verdict(good, "a red circle and a blue square").correct
    res = verdict(good, "a blue circle and a red square")  # the colours are there, on the wrong shapes
    assert sorted(failed(res)) in (["colour", "colour"], ["present", "present"])
    assert res.score == pytest.approx(60.0)


def test_extra_object_breaks_only_total():
    objs = [obj("diamond", "yellow", 14, 30), obj("triangle", "cyan", 48, 30), obj("circle", "orange", 30, 52)]
    res = verdict(objs, "a diamond and a triangle")
    assert failed(res) == ["total"] and "found 3" in res.constraints[-1].detail
    assert res.score == pytest.approx(200 / 3)


def test_nothing_on_grey_and_missing_objects():
    grey = corrupt.degrade(np.full((64, 64, 3), 100, np.uint8), np.random.default_rng(0), noise=8)
    assert scorer.detect(grey) == []
    res = scorer.score_image(grey, "a red circle to the left of a square")
    assert res.score == 0.0 and all(not c.satisfied for c in res.constraints)


def test_upscaled_image_same_verdict():
    p = "a purple diamond above an orange triangle"
    img = render.render(parse(p), 3)
    big = img.repeat(2, axis=0).repeat(2, axis=1)
    small, large = scorer.score_image(img, p), scorer.score_image(big, p)
    assert small.correct and large.correct
    assert [o.shape for o in small.objects] == [o.shape for o in large.objects]


def test_free_form_prompt_is_not_scorable():
    img = render.render(parse("a red circle"), 0)
    res = scorer.score_image(img, "an astronaut riding a horse, trending on artstation")
    assert not res.scorable and res.score is None and not res.correct
    assert res.summary().startswith("cannot score")
    vals = scorer.ExactScorer().score([img, img], ["an astronaut riding a horse", "a red circle"])
    assert math.isnan(vals[0]) and vals[1] == 100.0
    with pytest.raises(ValueError):
        scorer.score_image(img[..., 0], "a red circle")


@pytest.mark.parametrize("score,full,want", [(50, 100, 0.5), (100, 100, 1.0), (100, 50, 1.0), (0, 80, 0.0),
                                             (0, 0, 1.0), (40, 0, 1.0), (200 / 3, 100, 2 / 3)])
def test_relative_quality_rule(score, full, want):
    assert scorer.relative_quality(score, full) == pytest.approx(want)
    assert scorer.ExactScorer().relative_quality(score, full) == pytest.approx(100 * want)


def test_relative_quality_rejects_nan():
    with pytest.raises(ValueError):
        scorer.relative_quality(float("nan"), 100)


@pytest.mark.parametrize("k", range(8))
def test_colour_drift_keeps_one_object(k):
    """A model's colour drifts toward a palette neighbour: still one object, of its majority colour."""
    names = list(COLOURS)
    c, d = names[k], names[(k + 1) % 8]
    rgb = tuple(int(0.6 * a + 0.4 * b) for a, b in zip(COLOURS[c], COLOURS[d]))
    img = draw([Obj(SHAPES[k % 4], c, rgb, 30, 30, 8)], BG)
    found = scorer.detect(corrupt.degrade(img, np.random.default_rng(k), blur_sigma=1.0, noise=10))
    assert [(o.shape, o.colour) for o in found] == [(SHAPES[k % 4], c)]


def test_touching_objects_of_distant_colours_are_two():
    found = scorer.detect(draw([obj("circle", "red", 20, 30), obj("square", "blue", 34, 30)], BG))
    assert sorted((o.colour, o.shape) for o in found) == [("blue", "square"), ("red", "circle")]


def test_tinted_background_is_background():
    img = draw([obj("circle", "green", 20, 20), obj("diamond", "purple", 44, 44)], (150, 120, 100))  # chroma 50
    assert [(o.shape, o.colour) for o in scorer.detect(img)] == [("circle", "green"), ("diamond", "purple")]
