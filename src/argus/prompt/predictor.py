"""Per-prompt quality prediction for every level, and the prompt's optimal level under a floor.

Cache levels (K>0) are predicted from the nearest cached prompt's similarity (a per-K line
q = a + b·s, b ≥ 0) and are only available up to the K the index allows. Step and model levels
are predicted from the prompt embedding by ridge regression (one weight row per level, all rows in
one matrix so a decision is one small matrix-vector product). The optimal level is the cheapest
level whose predicted relative quality is at or above the floor (the per-prompt level choice Argus makes).

Artifacts are versioned JSON files naming the encoder, model and level set they were trained for;
`load_predictor(..., expect=...)` refuses a mismatch with a message naming the file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from argus.levels import FULL, Level, LevelError, parse_levels
from argus.prompt.index import Neighbour, SimilarityIndexError, Thresholds

PREDICTOR_FORMAT = "argus-level-predictor"
PREDICTOR_VERSION = 1


class PredictorError(ValueError):
    """A predictor artifact is invalid or does not fit its use; the message names the file and problem."""


@dataclass(frozen=True)
class Decision:
    """One prompt's predicted quality per level (percent) and its optimal level for the floor."""

    optimal_level: str
    predicted: dict[str, float]
    neighbour: Neighbour | None = None


@dataclass
class Predictor:
    """A trained predictor: ridge rows for step/model levels, similarity lines for cache levels."""

    encoder: str
    dim: int
    model: str  # model identity of the profiled pipeline
    steps: int  # N
    levels: tuple[str, ...]
    thresholds: Thresholds
    ridge_levels: tuple[str, ...]
    ridge_w: np.ndarray  # [len(ridge_levels), dim]
    ridge_b: np.ndarray  # [len(ridge_levels)]
    cache_lines: dict[str, tuple[float, float]]  # level -> (a, b): q = a + b * similarity
    costs: dict[str, float]  # relative cost of each level (full = 1.0)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self._parsed = {lv.name: lv for lv in parse_levels(list(self.levels), self.steps)}
        # Cheapest first; equal cost → the higher-quality family order in the level list wins.
        self._order = sorted(self.levels, key=lambda n: (self.costs[n], self.levels.index(n)))
        self.ridge_w = np.ascontiguousarray(self.ridge_w, dtype=np.float32)
        self.ridge_b = np.asarray(self.ridge_b, dtype=np.float32)

    def predict(self, embedding: np.ndarray, neighbour: Neighbour | None) -> dict[str, float]:
        """Predicted relative quality (percent) of every level available to this prompt."""
        out = {FULL: 100.0}
        if self.ridge_levels:
            q = self.ridge_w @ np.asarray(embedding, dtype=np.float32).reshape(-1) + self.ridge_b
            out.update(zip(self.ridge_levels, q.tolist()))
        if neighbour is not None and neighbour.k > 0:
            for name, (a, b) in self.cache_lines.items():
                if self._parsed[name].resume_step <= neighbour.k:
                    out[name] = a + b * neighbour.similarity
        return out

    def choose(self, predicted: dict[str, float], floor: float) -> str:
        """Cheapest level whose predicted quality is >= floor (the full level when none is)."""
        for name in self._order:
            q = predicted.get(name)
            if q is not None and q >= floor:
                return name
        return FULL

    def decide(self, embedding: np.ndarray, neighbour: Neighbour | None, floor: float) -> Decision:
        """Predict every level and choose the optimal one (the router's per-prompt decision)."""
        pred = self.predict(embedding, neighbour)
        return Decision(self.choose(pred, floor), pred, neighbour)

    def check(self, *, encoder: str | None = None, levels: list[str] | None = None, model: str | None = None,
              steps: int | None = None, where: str = "predictor") -> None:
        """Raise PredictorError unless this predictor was trained for exactly these settings."""
        if encoder is not None and encoder != self.encoder:
            raise PredictorError(f"{where}: trained with encoder {self.encoder!r}, but {encoder!r} is in use")
        if model is not None and model != self.model:
            raise PredictorError(f"{where}: trained for model {self.model!r}, but the service runs {model!r}")
        if steps is not None and steps != self.steps:
            raise PredictorError(f"{where}: trained for {self.steps} steps, but the service runs {steps}")
        if levels is not None and set(levels) != set(self.levels):
            missing = sorted(set(levels) - set(self.levels))
            extra = sorted(set(self.levels) - set(levels))
            raise PredictorError(f"{where}: level set differs from the service's "
                                 f"(not trained: {missing or 'none'}; not served: {extra or 'none'})")

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form."""
        return {"format": PREDICTOR_FORMAT, "version": PREDICTOR_VERSION, "encoder": self.encoder,
                "dim": self.dim, "model": self.model, "steps": self.steps, "levels": list(self.levels),
                "thresholds": self.thresholds.to_dict(), "costs": self.costs,
                "ridge": {"levels": list(self.ridge_levels), "w": self.ridge_w.astype(float).tolist(),
                          "b": self.ridge_b.astype(float).tolist()},
                "cache": {k: [float(a), float(b)] for k, (a, b) in self.cache_lines.items()},
                "meta": self.meta}


def demo_predictor_path() -> Path:
    """The bundled predictor of the `argus up` demo service (tiny random model: mechanics only, see its README)."""
    from importlib import resources

    return Path(str(resources.files("argus") / "data" / "predictors" / "demo-tiny.predictor.json"))


def save_predictor(pred: Predictor, path: str | Path) -> None:
    """Write the artifact atomically."""
    atomic_write_text(Path(path), json.dumps(pred.to_dict(), indent=1))


def load_predictor(path: str | Path, **expect: Any) -> Predictor:
    """Read and validate an artifact; `expect` (encoder=, levels=, model=, steps=) must match it."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PredictorError(f"{p}: predictor artifact not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PredictorError(f"{p}: cannot read predictor artifact ({e})") from None
    except json.JSONDecodeError as e:
        raise PredictorError(f"{p}: corrupt predictor artifact: not JSON ({e.msg} at line {e.lineno})") from None
    pred = parse_predictor(raw, str(p))
    pred.check(where=str(p), **expect)
    return pred


def parse_predictor(raw: Any, where: str = "predictor") -> Predictor:
    """Validate the JSON form into a Predictor."""
    if not isinstance(raw, dict) or raw.get("format") != PREDICTOR_FORMAT:
        raise PredictorError(f"{where}: not an {PREDICTOR_FORMAT} artifact")
    if raw.get("version") != PREDICTOR_VERSION:
        raise PredictorError(f"{where}: artifact version {raw.get('version')!r}, this Argus reads {PREDICTOR_VERSION}")
    try:
        levels = tuple(raw["levels"])
        steps = int(raw["steps"])
        parse_levels(list(levels), steps)
        dim = int(raw["dim"])
        ridge = raw["ridge"]
        w = np.asarray(ridge["w"], dtype=np.float32).reshape(len(ridge["levels"]), dim)
        b = np.asarray(ridge["b"], dtype=np.float32).reshape(len(ridge["levels"]))
        cache = {str(k): (float(v[0]), float(v[1])) for k, v in raw["cache"].items()}
        costs = {str(k): float(v) for k, v in raw["costs"].items()}
        thresholds = Thresholds.from_dict(raw["thresholds"], f"{where}.thresholds")
        pred = Predictor(encoder=str(raw["encoder"]), dim=dim, model=str(raw["model"]), steps=steps,
                         levels=levels, thresholds=thresholds, ridge_levels=tuple(ridge["levels"]), ridge_w=w,
                         ridge_b=b, cache_lines=cache, costs=costs, meta=dict(raw.get("meta", {})))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, (LevelError, SimilarityIndexError)):
            raise PredictorError(f"{where}: {e}") from None
        raise PredictorError(f"{where}: malformed artifact ({type(e).__name__}: {e})") from None
    covered = {FULL} | set(pred.ridge_levels) | set(pred.cache_lines)
    if covered != set(levels) or set(costs) != set(levels):
        raise PredictorError(f"{where}: models/costs do not cover exactly the levels {list(levels)}")
    if not all(math.isfinite(x) for x in np.concatenate([w.ravel(), b]).tolist()):
        raise PredictorError(f"{where}: non-finite weights")
    return pred


def fit_predictor(*, encoder: str, model: str, steps: int, levels: list[str], embeddings: np.ndarray,
                  quality: dict[str, np.ndarray], similarity: np.ndarray, costs: dict[str, float],
                  alpha: float = 1.0, reuse_target: float = 85.0, meta: dict | None = None) -> Predictor:
    """Fit from labelled prompts: `quality[level]` per prompt (NaN = no label), `similarity` to each prompt's neighbour.

    Cache thresholds are calibrated per K as the similarity where the fitted line reaches
    `reuse_target` percent, then made non-decreasing in K (a deeper skip needs a closer prompt).
    """
    parsed = parse_levels(levels, steps)
    x = np.asarray(embeddings, dtype=np.float64)
    n, dim = x.shape
    ridge_levels = [lv.name for lv in parsed if lv.family != "cache"]
    w = np.zeros((len(ridge_levels), dim))
    b = np.zeros(len(ridge_levels))
    for r, name in enumerate(ridge_levels):
        w[r], b[r] = ridge(x, _labels(quality, name, n), alpha, name)
    cache_levels = sorted((lv for lv in parsed if lv.needs_cache_hit), key=lambda lv: lv.resume_step)
    lines: dict[str, tuple[float, float]] = {}
    table: list[tuple[float, int]] = []
    prev = -1.0
    for lv in cache_levels:
        a, slope = _line(np.asarray(similarity, dtype=np.float64), _labels(quality, lv.name, n), lv.name)
        lines[lv.name] = (a, slope)
        if slope > 0:
            s = (reuse_target - a) / slope
        else:
            s = -1.0 if a >= reuse_target else math.inf
        s = max(s, prev)
        if s <= 1.0:
            table.append((float(max(s, -1.0)), lv.resume_step))
            prev = s
        else:
            prev = math.inf  # this K is never usable, so no deeper K is either
    thresholds = Thresholds(encoder, tuple(table), f"calibrated: fitted quality >= {reuse_target}%")
    return Predictor(encoder=encoder, dim=dim, model=model, steps=steps, levels=tuple(levels),
                     thresholds=thresholds, ridge_levels=tuple(ridge_levels), ridge_w=w, ridge_b=b,
                     cache_lines=lines, costs=dict(costs), meta=dict(meta or {}))


def _labels(quality: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    y = np.asarray(quality.get(name, np.full(n, np.nan)), dtype=np.float64)
    if y.shape != (n,):
        raise PredictorError(f"labels of {name!r}: expected {n} values, got {y.shape}")
    return y


def ridge(x: np.ndarray, y: np.ndarray, alpha: float, name: str) -> tuple[np.ndarray, float]:
    """Ridge weights and intercept of `y` (NaN: unlabelled) on the rows of `x` (the level rows of `fit_predictor`)."""
    ok = np.isfinite(y)
    if ok.sum() < 2:
        raise PredictorError(f"level {name!r}: {int(ok.sum())} labelled prompts, need at least 2 to fit")
    xs, ys = x[ok], y[ok]
    mx, my = xs.mean(0), ys.mean()
    xc = xs - mx
    # Dual form when there are fewer prompts than dimensions: (XXᵀ + αI)⁻¹ is n×n.
    if xc.shape[0] < xc.shape[1]:
        coef = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(xc.shape[0]), ys - my)
    else:
        coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(xc.shape[1]), xc.T @ (ys - my))
    return coef, float(my - mx @ coef)


def _line(s: np.ndarray, y: np.ndarray, name: str) -> tuple[float, float]:
    ok = np.isfinite(y) & np.isfinite(s)
    if ok.sum() < 1:
        raise PredictorError(f"level {name!r}: no labelled prompts with a neighbour")
    ss, ys = s[ok], y[ok]
    if ok.sum() >= 2 and np.ptp(ss) > 1e-9:
        slope, a = np.polyfit(ss, ys, 1)
        if slope > 0:  # quality may not fall as the neighbour gets closer; else fall back to the mean
            return float(a), float(slope)
    return float(ys.mean()), 0.0


def level_costs(levels: list[Level], n_full: int, per_image: dict[str, float] | None = None) -> dict[str, float]:
    """Relative cost per level: measured seconds per image over the full level's, else steps run / N."""
    if per_image and FULL in per_image and all(lv.name in per_image for lv in levels):
        full = per_image[FULL]
        return {lv.name: per_image[lv.name] / full for lv in levels}
    return {lv.name: lv.cost_ratio(n_full) for lv in levels}


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
