"""`argus profile` logic: run a prompt set through every level with the real pipeline and the scorer.

Writes the quality-profile JSONL (argus.prompt.profile_data) resumably, then the per-level latency
profile (`<out stem>.levels.json`) in the optimizer's format (argus.policy.profile), both atomically.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from argus.levels import FULL, Level, LevelError, cache_checkpoints, parse_levels
from argus.prompt.embedder import Embedder
from argus.prompt.predictor import atomic_write_text
from argus.prompt.profile_data import (HEADER_KEYS, ProfileDataError, PromptRecord, QualityProfile,
                                       header_line, read_profile)
from argus.prompt.prompt_sets import prompts_sha256



@dataclass(frozen=True)
class ProfileRun:
    """Settings of one profiling run."""

    levels: tuple[str, ...]
    height: int = 64
    width: int = 64
    seed: int = 0
    batch: int = 4  # prompts generated together in the quality phase
    batch_sizes: tuple[int, ...] = (1, 4, 8)  # latency phase
    repeats: int = 3  # timed runs per (level, batch size); the median is recorded
    warmup: bool = True
    device: str = "cpu"


def partial_path(out: Path) -> Path:
    """Where an unfinished profile lives until it is complete."""
    return out.with_name(out.name + ".partial")


def levels_path(out: Path) -> Path:
    """The latency/level profile written next to the quality profile."""
    return out.with_name(out.stem + ".levels.json")


def nearest_neighbours(emb: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the index of the most similar other row and that similarity (chunked: O(n·chunk) memory)."""
    n = emb.shape[0]
    nb = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan)
    if n < 2:
        return nb, sim
    for lo in range(0, n, chunk):
        s = emb[lo:lo + chunk] @ emb.T
        rows = np.arange(s.shape[0])
        s[rows, lo + rows] = -np.inf
        j = np.argmax(s, axis=1)
        nb[lo:lo + chunk] = j
        sim[lo:lo + chunk] = s[rows, j]
    return nb, sim


def run_profile(prompts: list[str], pipeline, scorer, embedder: Embedder, run: ProfileRun, out: str | Path,
                progress: bool = True, load_time: float = 0.0) -> QualityProfile:
    """Profile every prompt at every level, then latency per level and batch size; resumes `<out>.partial`."""
    out = Path(out)
    n_full = pipeline.settings.steps
    try:
        levels = parse_levels(list(run.levels), n_full)
    except LevelError as e:
        raise LevelError(f"--levels: {e}") from None
    if any(lv.family == "model" for lv in levels):
        raise LevelError("--levels: model-* levels need their own weights; profile them with that model's "
                         "pipeline (argus profile --weights) and merge the level files")
    if not prompts:
        raise ProfileDataError("prompt set is empty")
    if out.exists():
        raise ProfileDataError(f"{out}: already exists (a finished profile); choose another --out or delete it")
    pipeline.check_size(run.height, run.width)
    header = header_line(model=pipeline.identity, steps=n_full, levels=[lv.name for lv in levels],
                         encoder=embedder.name, scorer=scorer.name, score_kind=scorer.kind, height=run.height,
                         width=run.width, seed=run.seed, prompts_sha256=prompts_sha256(prompts),
                         n_prompts=len(prompts), batch_sizes=list(run.batch_sizes), device=run.device)
    part = partial_path(out)
    prof = _resume(part, header)
    emb = embedder.encode(prompts)
    nb, sim = nearest_neighbours(emb)
    todo = [i for i in range(len(prompts)) if i not in prof.prompts]
    from tqdm import tqdm

    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc="profile quality", unit="prompt",
               disable=not progress, file=sys.stderr)
    with open(part, "a", encoding="utf-8") as f:
        for lo in range(0, len(todo), run.batch):
            idx = todo[lo:lo + run.batch]
            for rec in _profile_batch(idx, prompts, nb, sim, pipeline, scorer, levels, run):
                prof.prompts[rec.i] = rec
                f.write(json.dumps(rec.to_dict()) + "\n")
            _sync(f)
            bar.update(len(idx))
        bar.close()
        cells = [(lv, b) for lv in levels for b in run.batch_sizes if (lv.name, b) not in prof.latency]
        bar = tqdm(total=len(levels) * len(run.batch_sizes), initial=len(levels) * len(run.batch_sizes) - len(cells),
                   desc="profile latency", unit="cell", disable=not progress, file=sys.stderr)
        ckpt = _checkpoint_source(prompts[0], pipeline, levels, run) if cells else {}
        for lv, b in cells:
            secs = _time_cell(lv, b, prompts, pipeline, run, ckpt)
            prof.latency[(lv.name, b)] = secs
            f.write(json.dumps({"type": "latency", "level": lv.name, "batch_size": b, "seconds": secs,
                                "repeats": run.repeats}) + "\n")
            _sync(f)
            bar.update(1)
        bar.close()
    atomic_write_text(levels_path(out), json.dumps(level_profile_doc(prof, pipeline.identity, load_time), indent=1))
    os.replace(part, out)
    return prof


def _resume(part: Path, header: dict[str, Any]) -> QualityProfile:
    if not part.exists():
        atomic_write_text(part, json.dumps(header) + "\n")
        return QualityProfile(header)
    prof = read_profile(part, allow_torn_tail=True)
    for k in HEADER_KEYS:
        if prof.header.get(k) != header[k]:
            raise ProfileDataError(f"{part}: cannot resume: it was started with {k}={prof.header.get(k)!r}, "
                                   f"this run has {header[k]!r} (use the same settings or delete the file)")
    # Rewrite without a torn tail so appended lines start on a fresh line.
    lines = [json.dumps(prof.header)] + [json.dumps(r.to_dict()) for r in prof.prompts.values()] + \
        [json.dumps({"type": "latency", "level": lv, "batch_size": b, "seconds": s, "repeats": 0})
         for (lv, b), s in prof.latency.items()]
    atomic_write_text(part, "\n".join(lines) + "\n")
    return prof


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _profile_batch(idx: list[int], prompts: list[str], nb: np.ndarray, sim: np.ndarray, pipeline, scorer,
                   levels: list[Level], run: ProfileRun) -> list[PromptRecord]:
    from argus.worker.pipeline import GenRequest

    full = next(lv for lv in levels if lv.name == FULL)
    ks = tuple(cache_checkpoints(levels))
    need = list(dict.fromkeys(idx + [int(nb[i]) for i in idx if nb[i] >= 0]))
    reqs = [GenRequest(prompts[j], run.seed + j, run.height, run.width) for j in need]
    done = dict(zip(need, pipeline.generate(reqs, full, checkpoints=ks)))
    images: dict[str, list] = {FULL: [done[i].image for i in idx]}
    for lv in levels:
        if lv.name == FULL:
            continue
        if lv.family == "cache":
            reqs = [GenRequest(prompts[i], run.seed + i, run.height, run.width,
                               resume_latent=done[int(nb[i])].checkpoints[lv.resume_step], resume_step=lv.resume_step)
                    for i in idx if nb[i] >= 0]
            res = iter(pipeline.generate(reqs, lv))
            images[lv.name] = [next(res).image if nb[i] >= 0 else None for i in idx]
        else:
            reqs = [GenRequest(prompts[i], run.seed + i, run.height, run.width) for i in idx]
            images[lv.name] = [r.image for r in pipeline.generate(reqs, lv)]
    scores: dict[str, list[float | None]] = {}
    for name, ims in images.items():
        have = [k for k, im in enumerate(ims) if im is not None]
        vals = scorer.score([ims[k] for k in have], [prompts[idx[k]] for k in have]) if have else []
        col: list[float | None] = [None] * len(idx)
        for k, v in zip(have, vals):
            col[k] = float(v)
        scores[name] = col
    out = []
    for k, i in enumerate(idx):
        sc = {name: col[k] for name, col in scores.items() if col[k] is not None}
        q = {name: scorer.relative_quality(s, sc[FULL]) for name, s in sc.items()}
        out.append(PromptRecord(i=i, prompt=prompts[i], seed=run.seed + i,
                                neighbour=int(nb[i]) if nb[i] >= 0 else None,
                                similarity=None if nb[i] < 0 else float(sim[i]), scores=sc, quality=q))
    return out


def _checkpoint_source(prompt: str, pipeline, levels: list[Level], run: ProfileRun) -> dict[int, Any]:
    from argus.worker.pipeline import GenRequest

    ks = tuple(cache_checkpoints(levels))
    if not ks:
        return {}
    full = next(lv for lv in levels if lv.name == FULL)
    return pipeline.generate([GenRequest(prompt, run.seed, run.height, run.width)], full, checkpoints=ks)[0].checkpoints


def _time_cell(lv: Level, b: int, prompts: list[str], pipeline, run: ProfileRun, ckpt: dict[int, Any]) -> float:
    from argus.worker.pipeline import GenRequest

    def reqs():
        out = []
        for j in range(b):
            p = prompts[j % len(prompts)]
            if lv.needs_cache_hit:
                out.append(GenRequest(p, run.seed + j, run.height, run.width, resume_latent=ckpt[lv.resume_step],
                                      resume_step=lv.resume_step))
            else:
                out.append(GenRequest(p, run.seed + j, run.height, run.width))
        return out

    if run.warmup:
        pipeline.generate(reqs(), lv)
    times = []
    for _ in range(max(1, run.repeats)):
        batch = reqs()
        t0 = time.perf_counter()
        pipeline.generate(batch, lv)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def level_profile_doc(prof: QualityProfile, model: str, load_time: float = 0.0) -> dict[str, Any]:
    """The optimizer's profile document (argus.policy.profile format) from a finished quality profile."""
    from argus.policy.profile import parse_profile

    h = prof.header
    levels = []
    for name in h["levels"]:
        lat = {b: s for (lv, b), s in prof.latency.items() if lv == name}
        if not lat:
            raise ProfileDataError(f"level {name!r} has no latency measurement")
        qs = [r.quality.get(name) for r in prof.prompts.values()]
        qs = [q for q in qs if q is not None]
        quality = min(100.0, statistics.fmean(qs)) if qs else 100.0
        levels.append({"level": name, "throughput": {str(b): b / s for b, s in sorted(lat.items())},
                       "service_time": lat[min(lat)], "quality": round(quality, 3), "model": model,
                       "load_time": load_time,
                       "note": f"measured by argus profile on {h.get('device', 'cpu')}: {len(qs)} prompts, "
                               f"{h['height']}x{h['width']}, scorer {h['scorer']} ({h['score_kind']})"})
    doc = {"model": model, "source": f"argus profile, {h['n_prompts']} prompts, {h['steps']} steps, "
                                     f"device {h.get('device', 'cpu')}",
           "assumptions": ["quality is the mean relative quality over all profiled prompts; for cache levels "
                           "each prompt resumed from its nearest other prompt, whatever the similarity"],
           "levels": levels}
    parse_profile(doc)  # the optimizer must be able to read what we write
    return doc
