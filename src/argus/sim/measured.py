"""A measured prompt population: simulated prompts drawn from a quality profile written by `argus profile`.

Where argus.sim.prompts.PromptModel draws each prompt's sensitivity from an assumed Gamma, this model
draws profiled prompts (with replacement, from the engine's seeded generator). Each carries what was
measured for it (argus.prompt.profile_data: relative quality in percent at every level, by the profile's
scorer; a cache level measured by resuming from the prompt's nearest other profiled prompt, which is the
cache situation itself). The router's view of it:

- with a trained predictor artifact (argus.prompt.predictor): the predictor applied to the prompt, exactly
  as `argus train` evaluates it: the prompt's embedding for step levels, the neighbour's similarity for
  cache levels, cache levels only up to the K the predictor's thresholds allow for that similarity;
- without one: the measured truth (plus optional Gaussian noise per request), every profiled cache level
  allowed.

Which prompts are simulated: when the predictor records its training profiles (meta `trained_on`) and
they share prompts with the simulated profile, the train / held-out split `argus train` used is
reproduced, predictions come from the train-split fit (the predictor `argus train` evaluated), and only
profiled prompts (text and seed) that fit was not fitted on are simulated (a held-out prompt may repeat
a training prompt's text with another seed, as in `argus train`'s evaluation; the notes say how many);
the planner's class table and the level means come from the training prompts. When the held-out share
is too small (fewer than `min_holdout` prompts) or the training data cannot be read, every profiled
prompt is simulated, and `notes` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from argus.levels import FULL, parse_levels
from argus.policy.profile import LevelProfile, Profile, ProfileError, load_profile, rescaled
from argus.prompt.embedder import Embedder
from argus.prompt.index import Neighbour
from argus.prompt.predictor import Predictor, PredictorError, fit_predictor, load_predictor
from argus.prompt.profile_data import ProfileDataError, QualityProfile, read_profile
from argus.prompt.training import merge_profiles, split
from argus.sim.prompts import PromptModelError, Prompts, optimal_levels

MIN_HOLDOUT = 20  # fewer held-out prompts than this: simulate all profiled prompts (and say so)


@dataclass(frozen=True)
class Population:
    """Profiled prompts with their measured quality and the router's predictions, columns in `levels` order."""

    prompts: tuple[str, ...]
    levels: tuple[str, ...]
    quality: np.ndarray  # (n, L) measured relative quality, percent
    predicted: np.ndarray  # (n, L) predicted quality; NaN where the predictor predicts none
    kmax: np.ndarray  # (n,) deepest cache level allowed (0: a miss)

    def __len__(self) -> int:
        return len(self.prompts)

    def columns(self, levels: tuple[LevelProfile, ...]) -> np.ndarray:
        """Column index of each of `levels`; PromptModelError naming a level the profile lacks."""
        missing = [lp.level for lp in levels if lp.level not in self.levels]
        if missing:
            raise PromptModelError(f"levels: {missing} not in the measured profile's levels {list(self.levels)}")
        return np.array([self.levels.index(lp.level) for lp in levels])


@dataclass(frozen=True)
class EmpiricalPromptModel:
    """Simulated prompts drawn from measured ones (argus.sim.prompts.PromptSource)."""

    simulated: Population  # drawn by the engine
    planning: Population  # what the planner knows: its class table and level means come from these
    model: str  # the profiled model's identity
    steps: int
    predictor_noise_pp: float = 0.0  # only without a predictor: Gaussian error added to the truth
    notes: tuple[str, ...] = ()  # how the population was formed, for the bench's output

    @property
    def hits(self) -> dict[int, float]:
        """K -> share of simulated prompts whose deepest allowed cache level is cache-kK."""
        ks, counts = np.unique(self.simulated.kmax, return_counts=True)
        return {int(k): float(c / counts.sum()) for k, c in zip(ks, counts)}

    def draw(self, levels: tuple[LevelProfile, ...], floor: float, n: int, rng: np.random.Generator) -> Prompts:
        """n prompts drawn with replacement from the simulated population."""
        return self._sample(self.simulated, levels, floor, n, rng)

    def profiled(self, levels: tuple[LevelProfile, ...], floor: float, n: int,
                 rng: np.random.Generator) -> Prompts:
        """n prompts drawn from the planning population (the predictor's training prompts when known)."""
        return self._sample(self.planning, levels, floor, n, rng)

    def _sample(self, pop: Population, levels: tuple[LevelProfile, ...], floor: float, n: int,
                rng: np.random.Generator) -> Prompts:
        cols = pop.columns(levels)
        idx = rng.integers(0, len(pop), size=n)
        q, kmax = pop.quality[idx][:, cols], pop.kmax[idx]
        pred = pop.predicted[idx][:, cols]
        if self.predictor_noise_pp > 0:
            pred = pred + rng.normal(0.0, self.predictor_noise_pp, pred.shape)
        return Prompts(quality=q, optimal=optimal_levels(np.nan_to_num(pred, nan=-np.inf), levels, floor, kmax),
                       kmax=kmax, predicted=pred)

    def level_means(self) -> dict[str, float]:
        """Mean measured quality per level over the planning population (what a level profile states)."""
        return {lv: float(np.mean(self.planning.quality[:, j])) for j, lv in enumerate(self.planning.levels)}

    def with_true_predictions(self) -> "EmpiricalPromptModel":
        """The same prompts and cache hits, predicted by their measured qualities (a perfect predictor)."""
        def exact(pop: Population) -> Population:
            return replace(pop, predicted=np.where(np.isfinite(pop.predicted), pop.quality, np.nan))
        return replace(self, simulated=exact(self.simulated), planning=exact(self.planning), predictor_noise_pp=0.0,
                       notes=self.notes + ("predictions replaced by the measured qualities (a perfect predictor)",))

    def without_per_prompt(self) -> "EmpiricalPromptModel":
        """The same prompts, predicted by their level's mean quality alone (over the planning population,
        cache levels over the prompts allowed them): no per-prompt knowledge beyond the cache-hit depth."""
        def flat(pop: Population) -> Population:
            allowed = np.isfinite(self.planning.predicted)
            mean = np.array([self.planning.quality[allowed[:, j], j].mean() if allowed[:, j].any() else np.nan
                             for j in range(len(pop.levels))])
            return replace(pop, predicted=np.where(np.isfinite(pop.predicted), mean[None, :], np.nan))
        return replace(self, simulated=flat(self.simulated), planning=flat(self.planning), predictor_noise_pp=0.0,
                       notes=self.notes + ("predictions replaced by level means (no per-prompt knowledge)",))


def measured_model(profile_path: str | Path, predictor_path: str | Path | None = None, *,
                   embedder: Embedder | None = None, noise_pp: float = 0.0,
                   min_holdout: int = MIN_HOLDOUT) -> EmpiricalPromptModel:
    """The measured population of one quality profile, seen through one predictor artifact (or the truth).

    `embedder` must be the predictor's encoder (default: built from the artifact's encoder name). Errors
    (PromptModelError) name the file and the problem: a missing or corrupt profile, a predictor of another
    model, steps, levels or score kind.
    """
    if noise_pp < 0:
        raise PromptModelError(f"noise_pp: {noise_pp} must be >= 0")
    path = Path(profile_path)
    prof = _read(path)
    levels = tuple(prof.header["levels"])
    n_full = int(prof.header["steps"])
    if FULL not in levels:
        raise PromptModelError(f"{path}: profiles no {FULL} level (every simulated prompt needs one)")
    records = [prof.prompts[i] for i in sorted(prof.prompts)]
    records = [r for r in records if all(r.quality.get(lv) is not None for lv in levels)]
    if not records:
        raise PromptModelError(f"{path}: no prompt measured at every level {list(levels)}")
    dropped = len(prof.prompts) - len(records)
    texts = tuple(r.prompt for r in records)
    quality = np.array([[r.quality[lv] for lv in levels] for r in records], dtype=np.float64)
    sim = np.array([np.nan if r.similarity is None else r.similarity for r in records])
    notes = [f"measured population: {path} ({prof.header['model']}, {n_full} steps, scorer "
             f"{prof.header['scorer']}, {len(records)} prompts measured at every level"
             + (f"; {dropped} without a neighbour left out" if dropped else "") + ")"]
    if predictor_path is None:
        deepest = max(_cache_skips(levels, n_full).values(), default=0)
        pop = Population(texts, levels, quality, quality.copy(), np.full(len(texts), deepest, dtype=np.int64))
        notes.append(f"no predictor: the router sees each prompt's measured quality"
                     + (f" plus N(0, {noise_pp:g} pp) noise" if noise_pp else " (an oracle)")
                     + "; every profiled cache level open to every prompt; the planner knows the same prompts")
        return EmpiricalPromptModel(pop, pop, prof.header["model"], n_full, noise_pp, tuple(notes))
    if noise_pp:
        raise PromptModelError("noise_pp: only without a predictor (a predictor's errors are its own)")
    pred = _load_predictor(Path(predictor_path), prof, path)
    emb = embedder if embedder is not None else _embedder(pred)
    if emb.name != pred.encoder:
        raise PromptModelError(f"{predictor_path}: trained with encoder {pred.encoder!r}, the embedder here is "
                               f"{emb.name!r}")
    train = _training_data(pred, Path(predictor_path))
    if train is None:
        pop = _predicted(pred, emb, texts, quality, sim, levels)
        notes.append(f"predictor {predictor_path} as shipped; its training prompts are not readable here "
                     f"(trained_on: {pred.meta.get('trained_on')}), so simulated prompts may include prompts "
                     f"it was fitted on; the planner knows the simulated prompts")
        return EmpiricalPromptModel(pop, pop, prof.header["model"], n_full, 0.0, tuple(notes))
    ds, keys, tr = train
    ours = [(r.prompt, r.seed) for r in records]  # a profiled prompt: its text and the seed its images had
    if not set(keys) & set(ours):
        pop = _predicted(pred, emb, texts, quality, sim, levels)
        plan = _predicted(pred, emb, tuple(ds.prompts), _matrix(ds.quality, levels), ds.similarity, levels)
        notes.append(f"predictor {predictor_path} as shipped: fitted on {len(ds.prompts)} other profiled prompts "
                     f"(none simulated{_shared(texts, set(ds.prompts))}); the planner knows those")
        return EmpiricalPromptModel(pop, plan, prof.header["model"], n_full, 0.0, tuple(notes))
    fitted = {keys[i] for i in tr}
    keep = np.array([k not in fitted for k in ours])  # held out by `argus train`, or never profiled for it
    if keep.sum() < min_holdout:
        pop = _predicted(pred, emb, texts, quality, sim, levels)
        notes.append(f"profile too small for a held-out population ({int(keep.sum())} held-out prompts < "
                     f"{min_holdout}): ALL {len(texts)} profiled prompts simulated with predictor "
                     f"{predictor_path}, which was fitted on them (in-sample predictions, optimistic)")
        return EmpiricalPromptModel(pop, pop, prof.header["model"], n_full, 0.0, tuple(notes))
    part = _refit(pred, ds, tr, emb)
    sel = np.flatnonzero(keep)
    pop = _predicted(part, emb, tuple(texts[i] for i in sel), quality[sel], sim[sel], levels)
    q_tr = _matrix({k: v[tr] for k, v in ds.quality.items()}, levels)
    plan = _predicted(part, emb, tuple(ds.prompts[i] for i in tr), q_tr, ds.similarity[tr], levels)
    notes.append(f"predictor {predictor_path}: its train / held-out split reproduced (holdout "
                 f"{pred.meta.get('holdout')}, seed {pred.meta.get('seed')}); predictions by the train-split fit "
                 f"({len(tr)} prompts, as `argus train` evaluated it); simulated: the {len(sel)} profiled prompts it "
                 f"was not fitted on{_shared([texts[i] for i in sel], {ds.prompts[i] for i in tr})}; "
                 f"the planner knows the {len(tr)} training prompts")
    return EmpiricalPromptModel(pop, plan, prof.header["model"], n_full, 0.0, tuple(notes))


def _read(path: Path) -> QualityProfile:
    try:
        prof = read_profile(path)
    except ProfileDataError as e:
        raise PromptModelError(str(e)) from None
    if not prof.prompts:
        raise PromptModelError(f"{path}: no prompt records")
    return prof


def _load_predictor(path: Path, prof: QualityProfile, profile_path: Path) -> Predictor:
    h = prof.header
    try:
        pred = load_predictor(path)
    except PredictorError as e:
        raise PromptModelError(str(e)) from None
    theirs = {"model": pred.model, "steps": pred.steps, "levels": sorted(pred.levels), "encoder": pred.encoder,
              "score_kind": pred.meta.get("score_kind", h["score_kind"])}
    ours = {"model": h["model"], "steps": int(h["steps"]), "levels": sorted(h["levels"]), "encoder": h["encoder"],
            "score_kind": h["score_kind"]}
    for k in theirs:
        if theirs[k] != ours[k]:
            raise PromptModelError(f"{path}: trained for {k}={theirs[k]!r}, but {profile_path} profiles "
                                   f"{k}={ours[k]!r} (a predictor of another model or setting)")
    return pred


def _embedder(pred: Predictor) -> Embedder:
    from argus.prompt.embedder import EmbedderError, make_embedder

    try:
        return make_embedder(pred.encoder)
    except EmbedderError as e:
        raise PromptModelError(f"encoder {pred.encoder!r}: {e}") from None


def _training_data(pred: Predictor, where: Path):
    """(merged dataset, its rows' (prompt, seed), train rows) the artifact was fitted on, or None when not
    readable. Rows are in merge_profiles' order, so the recorded split picks the same rows."""
    sources = pred.meta.get("trained_on") or []
    if not sources or "holdout" not in pred.meta or "seed" not in pred.meta:
        return None
    profiles = []
    for s in sources:
        p = Path(s)
        cands = [p] if p.is_absolute() else [p, where.parent / p]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            return None
        try:
            profiles.append((found, read_profile(found)))
        except ProfileDataError:
            return None
    try:
        ds = merge_profiles(profiles)
        tr, te = split(len(ds.prompts), float(pred.meta["holdout"]), int(pred.meta["seed"]))
    except (ProfileDataError, PredictorError):
        return None
    if "n_prompts" in pred.meta and int(pred.meta["n_prompts"]) != len(ds.prompts):
        return None  # the files changed since: the recorded split cannot be reproduced
    keys = [(r.prompt, r.seed) for _, prof in profiles for r in (prof.prompts[i] for i in sorted(prof.prompts))]
    return ds, keys, tr


def _shared(texts, fitted_texts: set[str]) -> str:
    """How many of `texts` repeat the text of a prompt the predictor was fitted on (with another seed)."""
    n = sum(t in fitted_texts for t in texts)
    return f"; {n} of them repeat the text of a fitted prompt, with another seed" if n else ""


def _refit(pred: Predictor, ds, tr: np.ndarray, emb: Embedder) -> Predictor:
    """The train-split predictor `argus train` evaluated: the same settings, fitted on the training rows."""
    x = emb.encode([ds.prompts[i] for i in tr])
    return fit_predictor(encoder=pred.encoder, model=pred.model, steps=pred.steps, levels=list(pred.levels),
                         embeddings=x, quality={k: v[tr] for k, v in ds.quality.items()},
                         similarity=ds.similarity[tr], costs=ds.costs, alpha=float(pred.meta.get("alpha", 1.0)),
                         reuse_target=float(pred.meta.get("reuse_target", 85.0)))


def _matrix(quality: dict[str, np.ndarray], levels: tuple[str, ...]) -> np.ndarray:
    return np.column_stack([np.asarray(quality[lv], dtype=np.float64) for lv in levels])


def _cache_skips(levels: tuple[str, ...], n_full: int) -> dict[str, int]:
    return {lv.name: lv.resume_step for lv in parse_levels(list(levels), n_full) if lv.family == "cache"}


def _predicted(pred: Predictor, emb: Embedder, texts: tuple[str, ...], quality: np.ndarray, sim: np.ndarray,
               levels: tuple[str, ...]) -> Population:
    """The predictor's view of each prompt, as the router and `argus train`'s evaluation form it."""
    x = emb.encode(list(texts))
    out = np.full(quality.shape, np.nan)
    kmax = np.zeros(len(texts), dtype=np.int64)
    keep = np.isfinite(quality).all(axis=1)
    for i in range(len(texts)):
        nb = None
        if np.isfinite(sim[i]):
            nb = Neighbour("profiled-neighbour", "", float(sim[i]), pred.thresholds.k_for(float(sim[i])))
            kmax[i] = nb.k
        p = pred.predict(x[i], nb)
        out[i] = [p.get(lv, np.nan) for lv in levels]
    sel = np.flatnonzero(keep)
    return Population(tuple(texts[i] for i in sel), levels, quality[sel], out[sel], kmax[sel])


def work_profile(model: EmpiricalPromptModel, reference: Profile, anchor: str = FULL) -> Profile:
    """Level profile for the simulated cluster: each level's cost from the denoising steps it runs, anchored
    on `reference`'s `anchor` level (throughput x N / steps run, service time x steps run / N, its load
    time), and each level's quality the planning population's measured mean."""
    ref = reference.get(anchor)
    means = model.level_means()
    out = []
    for lv in parse_levels(list(model.planning.levels), model.steps):
        f = model.steps / lv.steps_run(model.steps)
        q = min(100.0, max(0.01, round(means[lv.name], 3)))
        out.append(LevelProfile(level=lv.name, throughput={b: t * f for b, t in ref.throughput.items()},
                                service_time=ref.service_time / f, quality=q, model=model.model,
                                load_time=ref.load_time,
                                note=f"cost: {reference.model} {anchor} x {lv.steps_run(model.steps)}/{model.steps} "
                                     f"steps (assumption); quality {q}%: measured mean"))
    return Profile(model=model.model, levels=tuple(out), source=f"measured qualities, {reference.model} costs",
                   assumptions=(f"Each level's throughput is {reference.model}'s {anchor} per-GPU throughput times "
                                f"N / steps run (the bundled profile's own cost model); qualities measured.",))


def measured_levels_profile(model: EmpiricalPromptModel, levels_json: str | Path, reference: Profile,
                            anchor: str = FULL) -> Profile:
    """The profile's own `.levels.json` (measured latencies), every throughput scaled by one factor so that
    its `anchor` level's peak equals `reference`'s (service times divided by it, load times kept: as
    argus.policy.profile.rescaled), qualities from the planning population's measured means."""
    try:
        measured = load_profile(levels_json)
    except ProfileError as e:
        raise PromptModelError(str(e)) from None
    if measured.model != model.model:
        raise PromptModelError(f"{levels_json}: levels of model {measured.model!r}, the quality profile is of "
                               f"{model.model!r}")
    names = {lp.level for lp in measured.levels}
    if names != set(model.planning.levels):
        raise PromptModelError(f"{levels_json}: levels {sorted(names)} differ from the quality profile's "
                               f"{sorted(model.planning.levels)}")
    f = reference.get(anchor).peak_throughput / measured.get(anchor).peak_throughput
    scaled = rescaled(measured, f, f"{anchor} peak throughput set to {reference.model}'s; qualities measured")
    means = model.level_means()
    return replace(scaled, levels=tuple(replace(lp, quality=min(100.0, max(0.01, round(means[lp.level], 3))))
                                        for lp in scaled.levels))
