"""Approximation levels as data: a level is a family plus its parameter.

Pure module: no I/O. Names are the wire format everywhere (CRD, policy document,
Triton model name, metric label):

- ``cache-k<K>``: approximate caching, resume from a similar prompt's latent at
  step K of N and run N-K steps. ``cache-k0`` is the full-quality run.
- ``steps-<S>``: step reduction, the same model run for S of N steps.
- ``model-<name>``: a lighter checkpoint served by its own Deployment.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

Family = Literal["cache", "steps", "model"]

FULL = "cache-k0"  # the full-quality level: the whole schedule from noise with the main model

_NAME = re.compile(r"^(?:cache-k(?P<k>\d{1,4})|steps-(?P<s>\d{1,4})|model-(?P<m>[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?))$")


class LevelError(ValueError):
    """A level name or level set is invalid; the message names the problem."""


@dataclass(frozen=True, order=True)
class Level:
    """One approximation setting of one family."""

    name: str
    family: Family
    resume_step: int = 0  # K: the step it resumes at from a similar prompt's stored latent (cache family; 0: from noise)
    steps: int | None = None  # S: steps run from scratch (steps family)
    model: str | None = None  # checkpoint name (model family)

    def steps_run(self, n_full: int) -> int:
        """Denoising steps this level actually runs for a schedule of ``n_full`` steps."""
        if self.family == "cache":
            return n_full - self.resume_step
        if self.family == "steps":
            return int(self.steps or n_full)
        return n_full

    def cost_ratio(self, n_full: int) -> float:
        """Its cost: ideal cost relative to the full run (steps run / N)."""
        return self.steps_run(n_full) / n_full

    @property
    def needs_cache_hit(self) -> bool:
        """True when it can only run by resuming from a similar prompt's stored latent (cache family, K > 0)."""
        return self.resume_step > 0

    @property
    def is_full_quality(self) -> bool:
        """True for the level that runs the full schedule from noise with the main model (FULL)."""
        return self.family == "cache" and self.resume_step == 0

    @property
    def shares_main_weights(self) -> bool:
        """True when this level loads the main model (no reload to switch between such levels)."""
        return self.family != "model"

    def runs_on(self, loaded: "Level") -> bool:
        """Whether a worker that loaded `loaded` can serve this level without loading other weights: the
        same level, or two levels of the main model (a `model-*` level only on its own workers)."""
        return self == loaded or (self.shares_main_weights and loaded.shares_main_weights)


def parse_level(name: str, n_full: int = 50) -> Level:
    """Parse a level name; raise LevelError naming the problem."""
    if not isinstance(name, str):
        raise LevelError(f"level name must be a string, got {type(name).__name__}")
    m = _NAME.match(name)
    if not m:
        raise LevelError(
            f"unknown level {name!r}: expected cache-k<K>, steps-<S> or model-<name>")
    if m.group("k") is not None:
        k = int(m.group("k"))
        if not 0 <= k < n_full:
            raise LevelError(f"level {name!r}: K={k} must be in [0, {n_full})")
        return Level(name=name, family="cache", resume_step=k)
    if m.group("s") is not None:
        s = int(m.group("s"))
        if not 1 <= s <= n_full:
            raise LevelError(f"level {name!r}: steps={s} must be in [1, {n_full}]")
        return Level(name=name, family="steps", steps=s)
    return Level(name=name, family="model", model=m.group("m"))


@functools.lru_cache(maxsize=4096)
def level_named(name: str) -> Level:
    """The Level a valid name denotes, not checked against a schedule length: for names that come over the
    wire (a policy document, a worker's reply), already checked against N where the service was parsed."""
    return parse_level(name, 10_000)


def parse_levels(names: list[str], n_full: int = 50) -> list[Level]:
    """Parse a level set: non-empty, unique names, contains the full-quality level."""
    if not names:
        raise LevelError("levels: must name at least one level")
    seen: set[str] = set()
    out = []
    for n in names:
        if n in seen:
            raise LevelError(f"levels: {n!r} appears twice")
        seen.add(n)
        out.append(parse_level(n, n_full))
    if not any(lv.is_full_quality for lv in out):
        raise LevelError(f"levels: must include the full-quality level {FULL!r}")
    return out


def cache_checkpoints(levels: list[Level]) -> list[int]:
    """Steps at which a full run stores its latent: the K values of the cache levels (K>0)."""
    return sorted({lv.resume_step for lv in levels if lv.needs_cache_hit})


DEFAULT_LEVELS = [FULL, "cache-k5", "cache-k10", "cache-k15", "cache-k20", "cache-k25",
                  "steps-35", "steps-25", "steps-20"]
