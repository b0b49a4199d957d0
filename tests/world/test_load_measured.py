"""Measured quality in `argus load` reports: the exact scorer on every returned image.

Cases:
- exact_measure: a rendered image as the API's base64 PNG scores 100; a corrupted one less; a
  free-form prompt is not scorable (the image is never decoded); a broken PNG scores 0;
- summarize / timeline (pure): mean exact score over scored requests, not-scorable and not-scored
  counts, relative quality from the request's own full-quality image (cache-k0) or from another
  run's full-quality scores by (prompt, seed) (`full_scores_of` a report's JSON records), unknown
  otherwise; the capped rule; per-level scores; ratios carry the measured means;
- plot draws the measured panel;
- end to end on the real local system (Envoy, router, a Triton worker with the tiny model):
  `argus load --prompts world-held-out` scores every returned image and writes the measured quality
  into report.json, with relative quality known for every full-quality answer; a free-form prompt
  file gives 'not scorable' for every answer and still a report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from argus import cli
from argus.tools.loadgen import Record, exact_measure
from argus.tools.report import full_scores_of, plot, ratios, summarize, timeline
from argus.router.png import png_b64
from argus.world import corrupt, render
from argus.world.grammar import parse

P1 = "a photo of a red circle to the left of a blue square"
P2 = "three green triangles"


def test_exact_measure_on_api_images():
    good = render.render(parse(P1), 4)
    assert exact_measure(png_b64(good), P1) == (True, 100.0)
    _, bad = corrupt.corrupted(parse(P1), 4)
    ok, score = exact_measure(png_b64(bad), P1)
    assert ok and score < 100.0
    assert exact_measure("not base64 at all!", "a cat") == (False, None)
    assert exact_measure("bm90IGEgcG5n", P1) == (True, 0.0)  # base64 of 'not a png'


def _records():
    return [
        Record(1.0, 1.0, 200, "cache-k0", prompt=P1, seed=0, scorable=True, exact_score=80.0),
        Record(2.0, 1.0, 200, "steps-5", prompt=P1, seed=1, scorable=True, exact_score=40.0),  # full known: 80
        Record(3.0, 1.0, 200, "steps-5", prompt=P2, seed=2, scorable=True, exact_score=90.0),  # full known: 60
        Record(4.0, 1.0, 200, "cache-k2", prompt=P2, seed=3, scorable=True, exact_score=50.0),  # full unknown
        Record(5.0, 1.0, 200, "steps-5", prompt="a cat", seed=4, scorable=False),
        Record(6.0, 1.0, 200, "steps-5", prompt=P1, seed=5),  # not scored (no measure)
        Record(7.0, 1.0, 503, error="busy", prompt=P1, seed=6),
    ]


def test_summary_measured_quality():
    other_run = [{"status": 200, "level": "cache-k0", "prompt": P1, "seed": 1, "exact_score": 80.0},
                 {"status": 200, "level": "cache-k0", "prompt": P2, "seed": 2, "exact_score": 60.0},
                 {"status": 200, "level": "steps-5", "prompt": P2, "seed": 3, "exact_score": 99.0},  # not full
                 {"status": 503, "level": None, "prompt": P2, "seed": 3}]
    full = full_scores_of(other_run)
    assert full == {(P1, 1): 80.0, (P2, 2): 60.0}
    s = summarize(_records(), slo_s=10, duration=10, full_scores=full)
    m = s["measured_quality"]
    assert (m["scored"], m["not_scorable"], m["not_scored"]) == (4, 1, 1)
    assert m["mean_exact_score"] == pytest.approx((80 + 40 + 90 + 50) / 4)
    # own full image 100 %, 40/80 = 50 %, 90 over a full 60 is capped at 100 %; the cache-k2 one is unknown
    assert m["relative_known"] == 3 and m["mean_relative_quality"] == pytest.approx((100 + 50 + 100) / 3, abs=1e-3)
    assert m["exact_score_by_level"] == {"cache-k0": 80.0, "cache-k2": 50.0, "steps-5": 65.0}
    assert s["avg_exact_score"] == m["mean_exact_score"]
    without = summarize(_records(), slo_s=10, duration=10)["measured_quality"]
    assert without["relative_known"] == 1 and without["mean_relative_quality"] == 100.0
    r = ratios(s, summarize(_records()[:1], slo_s=10, duration=10))
    assert r["avg_exact_score"] == pytest.approx(65 / 80, abs=1e-3)


def test_timeline_and_plot_show_measured_quality(tmp_path):
    full = {(P1, 1): 80.0}
    tl = timeline(_records(), [], slo_s=10, bin_s=2.0, duration=8, full_scores=full)
    assert tl["exact_score"] == [80.0, 65.0, 50.0, None]  # 2 s bins; bin 3 has only unscored / failed requests
    assert tl["measured_quality"] == [100.0, 50.0, None, None]
    png = plot({"argus": tl, "ha": tl}, tmp_path / "t.png", "measured")
    assert png.stat().st_size > 1000
    assert "measured_quality" in timeline(_records(), [], slo_s=10, bin_s=2.0, duration=8)


@pytest.mark.timeout(400)
def test_load_reports_measured_quality(local_system, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["load", "bursty", "--url", local_system.url, "--duration", "4", "--rate", "0.5",
                   "--prompts", "world-held-out", "--size", "64x64", "--out", str(out), "--label", "world"])
    assert rc == 0
    text = capsys.readouterr().out
    doc = json.loads((out / "world" / "report.json").read_text())
    ok = [r for r in doc["records"] if r["status"] == 200]
    assert ok, doc["summary"]
    assert all(r["scorable"] is True and 0.0 <= r["exact_score"] <= 100.0 and parse(r["prompt"]) for r in ok)
    m = doc["summary"]["measured_quality"]
    assert m["scored"] == len(ok) and m["not_scorable"] == 0
    assert m["mean_exact_score"] == pytest.approx(np.mean([r["exact_score"] for r in ok]), abs=1e-3)
    full = [r for r in ok if r["level"] == "cache-k0"]
    assert m["relative_known"] == len(full)
    assert "measured quality: exact score" in text
    assert (out / "world" / "timeline.png").stat().st_size > 1000

    free = tmp_path / "free.txt"
    free.write_text("an astronaut riding a horse\na bowl of soup\n")
    rc = cli.main(["load", "bursty", "--url", local_system.url, "--duration", "3", "--rate", "0.5",
                   "--prompts", str(free), "--out", str(out), "--label", "free"])
    assert rc == 0
    m = json.loads((out / "free" / "report.json").read_text())["summary"]["measured_quality"]
    assert m["scored"] == 0 and m["not_scorable"] >= 1 and m["mean_exact_score"] is None
    assert "not scorable" in capsys.readouterr().out
