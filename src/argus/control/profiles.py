"""The level profiles a service plans with: the bundled/profiled numbers, derived ones for unprofiled levels."""

from __future__ import annotations

from argus.levels import FULL, parse_level
from argus.policy.profile import LevelProfile, Profile, ProfileError
from argus.spec import T2IServiceSpec

# Quality lost per unit of skipped work when a level has no profile: a linear stand-in between the
# published SDXL points (cache-k25 ~ 50% of the work at ~93%, steps-20 ~ 40% at ~89%).
_QUALITY_LOSS_PER_SKIPPED_WORK = 15.0


def service_profiles(spec: T2IServiceSpec, profile: Profile) -> tuple[LevelProfile, ...]:
    """One profile per spec level, full quality first, then spec order; unprofiled levels are derived."""
    names = sorted(spec.levels, key=lambda n: n != FULL)  # stable: keeps the spec's order otherwise
    try:
        base = profile.get(FULL)
    except ProfileError:
        base = profile.levels[0]
    out = []
    for name in names:
        try:
            out.append(profile.get(name))
        except ProfileError:
            out.append(_derive(name, base, spec.model.steps))
    return tuple(out)


def _derive(name: str, base: LevelProfile, n_full: int) -> LevelProfile:
    """Scale the full-quality profile by the level's share of denoising work (an assumption, said so)."""
    ratio = parse_level(name, n_full).cost_ratio(n_full)
    return LevelProfile(level=name, throughput={b: t / ratio for b, t in base.throughput.items()},
                        service_time=base.service_time * ratio,
                        quality=max(1.0, base.quality - _QUALITY_LOSS_PER_SKIPPED_WORK * (1 - ratio)),
                        model=base.model, load_time=base.load_time,
                        note=f"assumption: derived from {base.level} by work ratio {ratio:.2f}")
