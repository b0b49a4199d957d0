"""The demo's level profile: throughput measured on this kind of machine, relative quality from published numbers.

The demo model has random weights, so its own quality scores say nothing (every level scored
~100%). A control loop fed those numbers just picks the cheapest level. So the demo keeps the
measured throughputs and service times and takes each level's mean relative quality from the
published SDXL per-level numbers (the Argus paper's, bundled as `data/profiles/sdxl_published.json`), matched by the
share of denoising work the level skips. That is an assumption, and the profile says so.
"""

from __future__ import annotations

from dataclasses import replace

from argus.levels import level_named, parse_level
from argus.policy.profile import LevelProfile, Profile

PUBLISHED_STEPS = 50  # the published SDXL numbers are for 50 denoising steps
# Seconds from stopping a local worker to its replacement being ready: Triton drains in-flight work (up to
# 5 s), the process exits, the new one starts and loads the model (~11 s). Six switches in two burst runs
# on a quiet 2-core machine took 14.0-25.7 s, mean 19.7 (bench/RESULTS.md, simulator fidelity with the
# loop on). `argus profile` times the model load alone (~7.5 s), which made moves look cheap to the loop.
LOCAL_SWITCH_S = 20.0


def published_quality(level: str, n_full: int, published: Profile) -> float:
    """Mean relative quality (%) of `level` at N=`n_full` steps, read off the published N=50 table.

    A level that skips a fraction f of the work maps to the published level of its family that
    skips the same fraction (cache-k5 of 20 ~ cache-k12.5 of 50), interpolated linearly between
    published points; below the last published step level the line through the last two is extended.
    """
    lv = parse_level(level, n_full)
    if lv.family == "cache":
        x = lv.resume_step * PUBLISHED_STEPS / n_full
        pts = sorted((parse_level(p.level, PUBLISHED_STEPS).resume_step, p.quality)
                     for p in published.levels if level_named(p.level).family == "cache")
    elif lv.family == "steps":
        x = lv.steps_run(n_full) * PUBLISHED_STEPS / n_full
        pts = sorted([(PUBLISHED_STEPS, 100.0)] + [(parse_level(p.level, PUBLISHED_STEPS).steps_run(PUBLISHED_STEPS),
                                                    p.quality) for p in published.levels
                                                    if level_named(p.level).family == "steps"])
    else:
        raise ValueError(f"{level}: no published quality for the {lv.family!r} family")
    return round(_interpolate(pts, x), 2)


def _interpolate(pts: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through `pts` (sorted by x, at least two), the end segments extended beyond the ends."""
    i = 0
    while i < len(pts) - 2 and x > pts[i + 1][0]:
        i += 1
    (x0, y0), (x1, y1) = pts[i], pts[i + 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def demo_profile(measured: Profile, published: Profile, n_full: int,
                 switch_s: float = LOCAL_SWITCH_S) -> Profile:
    """`measured` with each level's quality replaced by its published-equivalent quality (said in notes)
    and its load time by the local runtime's measured replica switch time, if longer."""
    levels = []
    for lp in measured.levels:
        q = published_quality(lp.level, n_full, published)
        levels.append(LevelProfile(level=lp.level, throughput=dict(lp.throughput), service_time=lp.service_time,
                                   quality=q, model=lp.model, load_time=max(lp.load_time, switch_s),
                                   note=f"throughput/service time: {lp.note}; quality {q}%: assumption, "
                                        f"published SDXL per-level quality at the same share of skipped work"))
    assumption = (f"Relative quality per level is NOT measured: the demo model has random weights. Each level's "
                  f"quality is the published SDXL mean relative quality ({published.model}, N={PUBLISHED_STEPS}) "
                  f"of the level that skips the same share of the {n_full}-step work, interpolated; step levels "
                  f"use the bundled SDXL step-level estimates, extended linearly below the last one.")
    switch = (f"A replica move takes {switch_s:g} s in the local runtime (drain, process exit, start, model "
              f"load; measured), used as each level's load time.")
    return Profile(model=measured.model, levels=tuple(levels), source=measured.source,
                   assumptions=tuple(a for a in measured.assumptions if "quality" not in a) + (assumption, switch))


def at_steps(profile: Profile, n_from: int, n_to: int) -> Profile:
    """`profile` (measured with an `n_from`-step model) for the same model run with `n_to` steps: each level
    renamed to the level that skips the same share of the work (cache-k5 of 20 is cache-k1 of 4, steps-10
    of 20 is steps-2 of 4); levels with no such level are left out. Throughputs are kept (an `n_to`-step
    model is faster: rescale them with `rescaled` when that matters). For tests that run the tiny model
    with few steps so that a busy machine still serves it within their bounds."""
    levels = []
    for lp in profile.levels:
        lv = parse_level(lp.level, n_from)
        if lv.family == "cache":
            x, name = lv.resume_step * n_to / n_from, "cache-k{}"
        elif lv.family == "steps":
            x, name = lv.steps * n_to / n_from, "steps-{}"
        else:
            continue
        if x == int(x) and (lv.family == "cache" or x >= 1):
            levels.append(replace(lp, level=name.format(int(x)),
                                  note=f"{lp.note}; measured as {lp.level} of {n_from} steps, used for {n_to}"))
    return replace(profile, levels=tuple(levels), assumptions=profile.assumptions + (
        f"Levels of the {n_from}-step profile used for {n_to} steps at the same share of skipped work, "
        f"throughputs unchanged.",))
