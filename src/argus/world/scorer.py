"""The exact scorer: parse an image of the world and check every constraint of its prompt.

Parsing (any image size, HxWx3 uint8):

1. Background: the per-channel median of the image's one-pixel border (the renderer keeps objects
   `MARGIN` pixels off the edge; a model's border is background too). Its tint (its difference
   from its own grey level) is subtracted before chroma is measured, so a tinted background is
   not an object; colours are named from the pixels as they are (objects are drawn untinted).
2. Object pixels: chroma (max - min of RGB) of at least `Params.chroma_min`; the grey background has
   chroma <= 12. Each object pixel is named by the nearest palette hue (HSV hue, circular distance).
3. Objects: 8-connected components of the object pixels, kept if their area is at least
   `Params.min_area_frac` of the image (20 pixels at 64x64; the smallest drawn object has ~70), so
   blur fringes and specks are not objects. A component is one object of its majority colour name:
   a model's colour drifts across an object, and pixel-wise names would cut an orange-yellow object
   into an orange and a yellow one. Only where a colour far in hue (>= 80 degrees, never a palette
   neighbour) holds a quarter of the pixels is it split, per colour (two touching objects of
   distant colours). Within a component, pixels under half its 90th-percentile chroma are dropped
   first (the half-maximum contour is where a blurred edge lies), and what stays connected is an
   object: blur and noise can bridge the 3-pixel gap between two objects at the low threshold.
4. Shape, by geometry that survives blur and noise (`shape_features`, moments of the mask): a
   strongly negative vertical skewness is a triangle (apex up, widest at the bottom); otherwise the
   axis-minus-diagonal kurtosis separates square (-0.6), circle (0) and diamond (+0.6). (Extremes
   such as the box's fill ratio or extents are not used: blur cuts a diamond's tips and fills its
   box like a circle's, and one noisy pixel moves an extent.) An object's centre is its
   bounding-box centre (the renderer's centre for every shape; a triangle's mass centre is lower).

Constraints of a scene (`constraints_of`), each satisfied or not:

- per group of one object: `present` (an object of that shape) and, when the prompt names a colour,
  `colour` (that object has it). For two groups these are attribute binding (color_attr): each
  shape must carry its own colour.
- per group of several objects (counting): `count` (exactly that many of the shape) and, when a
  colour is named, `colour` (all of them have it).
- position: `relation` (`render.relation_holds` on the two matched objects' centres).
- every scene: `total` (no extra objects: exactly `scene.n_objects` objects in the image).

Objects are matched to the prompt's single-object groups by the assignment that satisfies most
constraints (exhaustive; the 8 largest objects take part). Score = 100 x satisfied / constraints.

Relative quality of an approximated image = min(1, its score / the full-quality image's score for
the same prompt and seed). It is 1 whenever the approximation scores at least as much as the full
image; that includes a full image scoring 0: the approximation cannot lose what the full image did
not have, so it keeps its (zero-valued) quality, and the prompt stays in means instead of making them
undefined. Absolute scores are reported beside it, so such prompts are not hidden.

A prompt outside the grammar (`grammar.parse` returns None) gets a result with `scorable` False and
score None, never an exception.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from argus.world.grammar import COLOURS, Group, Scene, parse
from argus.world.render import relation_holds

KIND = "exact"
MAX_MATCHED = 8  # objects that take part in the assignment search (largest first)


@dataclass(frozen=True)
class Params:
    """Thresholds of the parser; the defaults are tuned on rendered, blurred and noisy images."""

    chroma_min: float = 45.0  # an object pixel's max-min of RGB (background <= 12, palette >= ~120)
    min_area_frac: float = 20 / 4096  # smallest object, as a share of the image's pixels
    edge_frac: float = 0.5  # within an object, keep pixels of at least this share of its p90 chroma
    triangle_skew: float = -0.28  # vertical skewness at most this: a triangle (-0.6 drawn, others 0)
    diamond_kurt: float = 0.2  # axis - diagonal kurtosis at least this: a diamond (+0.6 drawn)
    square_kurt: float = -0.3  # ... at most this: a square (-0.6 drawn; between: a circle, 0)
    split_hue_gap: float = 80.0  # a component splits into objects only for colours this far apart in hue
    split_share: float = 0.25  # ... and only if the second colour holds this share of its pixels


@dataclass(frozen=True)
class Detected:
    """One object found in an image: colour name, shape, bounding-box centre (x, y), area, box."""

    colour: str
    shape: str
    cx: float
    cy: float
    area: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive
    features: tuple[float, float, float]  # `shape_features` of its mask


@dataclass(frozen=True)
class Constraint:
    """One checked constraint: its kind, a readable name, whether it holds and why."""

    kind: str  # present | colour | count | relation | total
    name: str
    satisfied: bool
    detail: str


@dataclass(frozen=True)
class ScoreResult:
    """The verdict on one image: per-constraint results and the score (None when not scorable)."""

    prompt: str
    scorable: bool
    score: float | None
    constraints: tuple[Constraint, ...] = ()
    objects: tuple[Detected, ...] = ()
    task: str | None = None
    reason: str = ""

    @property
    def correct(self) -> bool:
        """Every constraint holds (GenEval's per-image verdict)."""
        return self.scorable and all(c.satisfied for c in self.constraints)

    def summary(self) -> str:
        """One line: score and the failed constraints."""
        if not self.scorable:
            return f"cannot score: {self.reason}"
        failed = [f"{c.name} ({c.detail})" for c in self.constraints if not c.satisfied]
        return f"{self.score:.0f}/100" + (": failed " + "; ".join(failed) if failed else "")


# --- parsing the image ---------------------------------------------------------------------------

def _hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees of [..., 3] float RGB (grey pixels get 0)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return 60.0 * h


_NAMES = tuple(COLOURS)
_PALETTE_HUE = _hue(np.array([COLOURS[n] for n in _NAMES], dtype=float))


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """Index into `COLOURS` of the nearest palette hue for each pixel of [..., 3] RGB."""
    d = np.abs(_hue(rgb.astype(float))[..., None] - _PALETTE_HUE)
    return np.argmin(np.minimum(d, 360.0 - d), axis=-1)


def shape_features(mask: np.ndarray) -> tuple[float, float, float]:
    """(axis minus diagonal kurtosis, vertical skewness, fill of the box) of a non-empty boolean mask.

    Fourth moments tell the three symmetric shapes apart where second moments cannot (they are
    isotropic for all three): a square projects onto an axis as a uniform distribution (kurtosis
    1.8) and onto a diagonal as a triangular one (2.4), a diamond the other way round, a circle the
    same both ways (2.0). So the mean axis kurtosis minus the mean diagonal kurtosis is -0.6 for a
    square, 0 for a circle, +0.6 for a diamond. A triangle (apex up) has its mass low: the vertical
    skewness is -0.6 (0 for the others). Moments use every pixel, so blur and noise, which move a
    shape's extreme pixels, barely move them.
    """
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), ys - ys.mean()

    def kurt(p: np.ndarray) -> float:
        v = float((p * p).mean())
        return float((p ** 4).mean()) / (v * v) if v > 0 else 0.0

    axis = (kurt(x) + kurt(y)) / 2
    diag = (kurt((x + y) / math.sqrt(2)) + kurt((x - y) / math.sqrt(2))) / 2
    vy = float((y * y).mean())
    skew = float((y ** 3).mean()) / vy ** 1.5 if vy > 0 else 0.0
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    return axis - diag, skew, float(len(ys) / (w * h))


def classify(mask: np.ndarray, params: Params = Params()) -> str:
    """The shape of a non-empty boolean mask (see `shape_features`)."""
    kdiff, skew, _ = shape_features(mask)
    if skew <= params.triangle_skew:
        return "triangle"
    if kdiff >= params.diamond_kurt:
        return "diamond"
    if kdiff <= params.square_kurt:
        return "square"
    return "circle"


def background_of(image: np.ndarray) -> np.ndarray:
    """The background colour: the per-channel median of the one-pixel border."""
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    return np.median(border, axis=0)


def _hue_gap(i: int, j: int) -> float:
    d = abs(float(_PALETTE_HUE[i] - _PALETTE_HUE[j]))
    return min(d, 360.0 - d)


def _pieces(comp: np.ndarray, names: np.ndarray, params: Params, min_area: int) -> list[tuple[int, np.ndarray]]:
    """A foreground component as (colour index, mask) objects: one object of its main colour, unless a
    colour far from it in hue holds a large share (two touching objects of distant colours)."""
    from scipy import ndimage

    counts = np.bincount(names[comp], minlength=len(_NAMES))
    main = int(np.argmax(counts))
    far = [c for c in range(len(_NAMES)) if c != main and _hue_gap(c, main) >= params.split_hue_gap
           and counts[c] >= max(min_area, params.split_share * comp.sum())]
    if not far:
        return [(main, comp)]
    out = []
    eight = np.ones((3, 3), bool)
    for c in [main, *far]:
        # pixels of hue-neighbours of c go with c: one object's hue varies across its pixels
        near = [k for k in range(len(_NAMES)) if k == c or _hue_gap(k, c) < params.split_hue_gap / 2]
        lab, n = ndimage.label(comp & np.isin(names, near), structure=eight)
        out += [(c, lab == k) for k in range(1, n + 1) if (lab == k).sum() >= min_area]
    return out


def detect(image: np.ndarray, params: Params = Params()) -> list[Detected]:
    """The objects of an image, largest first."""
    from scipy import ndimage

    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image must be HxWx3, got shape {a.shape}")
    f = a.astype(float)
    bg = background_of(f)
    g = f - (bg - bg.mean())  # for telling object from background: the background's tint removed
    chroma = g.max(-1) - g.min(-1)
    fg = chroma >= params.chroma_min
    names = np.full(chroma.shape, -1)
    names[fg] = colour_names(f[fg])
    min_area = max(4, int(round(params.min_area_frac * a.shape[0] * a.shape[1])))
    eight = np.ones((3, 3), bool)
    lab, _ = ndimage.label(fg, structure=eight)
    out: list[Detected] = []
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        comp = lab[sl] == k
        if comp.sum() < min_area:
            continue
        # the half-maximum contour; it also cuts blurred bridges between close objects
        core = comp & (chroma[sl] >= params.edge_frac * np.percentile(chroma[sl][comp], 90))
        sub, n = ndimage.label(core, structure=eight)
        pieces = [p for j in range(1, n + 1) if (part := sub == j).sum() >= min_area
                  for p in _pieces(part, names[sl], params, min_area)]
        for ci, piece in pieces:
            ys, xs = np.nonzero(piece)
            y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
            crop = piece[y0:y1 + 1, x0:x1 + 1]
            oy, ox = sl[0].start, sl[1].start
            out.append(Detected(_NAMES[ci], classify(crop, params), ox + (x0 + x1) / 2, oy + (y0 + y1) / 2,
                                int(len(ys)), (int(ox + x0), int(oy + y0), int(ox + x1), int(oy + y1)),
                                shape_features(crop)))
    out.sort(key=lambda d: -d.area)
    return out


# --- checking the scene --------------------------------------------------------------------------

def _label(g: Group) -> str:
    return g.text().split(" ", 1)[1] if g.count == 1 else g.text()


def _check(scene: Scene, objs: list[Detected], match: dict[int, Detected | None]) -> list[Constraint]:
    """Constraints of `scene` on `objs`, single-object groups matched by `match` (group index -> object)."""
    out: list[Constraint] = []
    for i, g in enumerate(scene.groups):
        if g.count == 1:
            o = match.get(i)
            got = f"got {o.colour} {o.shape} at ({o.cx:.0f}, {o.cy:.0f})" if o else "no object left to match"
            out.append(Constraint("present", f"present: a {g.shape}", o is not None and o.shape == g.shape, got))
            if g.colour:
                out.append(Constraint("colour", f"colour: the {g.shape} is {g.colour}",
                                      o is not None and o.colour == g.colour, got))
        else:
            same = [o for o in objs if o.shape == g.shape]
            out.append(Constraint("count", f"count: {g.count} {g.shape}s", len(same) == g.count,
                                  f"found {len(same)} {g.shape}s"))
            if g.colour:
                cols = sorted(o.colour for o in same)
                out.append(Constraint("colour", f"colour: every {g.shape} is {g.colour}",
                                      bool(same) and all(c == g.colour for c in cols),
                                      f"{g.shape} colours {', '.join(cols) or 'none'}"))
    if scene.task == "position":
        a, b = match.get(0), match.get(1)
        ok = a is not None and b is not None and relation_holds((a.cx, a.cy), (b.cx, b.cy), scene.relation)
        detail = (f"first at ({a.cx:.0f}, {a.cy:.0f}), second at ({b.cx:.0f}, {b.cy:.0f})"
                  if a is not None and b is not None else "an object is missing")
        out.append(Constraint("relation", f"relation: {_label(scene.groups[0])} {scene.relation} "
                                          f"{_label(scene.groups[1])}", ok, detail))
    out.append(Constraint("total", f"total: exactly {scene.n_objects} object{'s' * (scene.n_objects > 1)}",
                          len(objs) == scene.n_objects, f"found {len(objs)}"))
    return out


def constraints_of(scene: Scene, objs: list[Detected]) -> list[Constraint]:
    """The constraints of `scene` on the detected objects, under the best matching."""
    slots = [i for i, g in enumerate(scene.groups) if g.count == 1]
    pool = objs[:MAX_MATCHED]
    best: list[Constraint] | None = None
    picks = list(pool) + [None] * len(slots)  # None: a slot left unmatched
    for combo in itertools.permutations(range(len(picks)), len(slots)):
        match = {s: picks[j] for s, j in zip(slots, combo)}
        res = _check(scene, objs, match)
        if best is None or sum(c.satisfied for c in res) > sum(c.satisfied for c in best):
            best = res
            if all(c.satisfied for c in res):
                break
    return best if best is not None else _check(scene, objs, {})


def score_image(image: np.ndarray, prompt: str, params: Params = Params()) -> ScoreResult:
    """Parse `image` and check it against `prompt`; a prompt outside the grammar is not scorable."""
    scene = parse(prompt)
    if scene is None:
        return ScoreResult(prompt, False, None, reason="the prompt is outside the world's grammar")
    return score_scene(image, scene, prompt, params)


def score_b64_png(b64: str, prompt: str, params: Params = Params()) -> ScoreResult:
    """Score an image given as base64 PNG text (the API's `b64_json`); the prompt is parsed first, so
    an image of a prompt outside the grammar is never decoded. An undecodable image scores 0."""
    scene = parse(prompt)
    if scene is None:
        return ScoreResult(prompt, False, None, reason="the prompt is outside the world's grammar")
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(base64.b64decode(b64, validate=True))) as im:
            image = np.asarray(im.convert("RGB"))
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as e:
        cons = (Constraint("image", "image: a decodable PNG", False, f"{type(e).__name__}: {e}"[:200]),)
        return ScoreResult(prompt, True, 0.0, cons, task=scene.task)
    return score_scene(image, scene, prompt, params)


def score_scene(image: np.ndarray, scene: Scene, prompt: str = "", params: Params = Params()) -> ScoreResult:
    """Parse `image` and check it against `scene`."""
    objs = detect(image, params)
    cons = tuple(constraints_of(scene, objs))
    score = 100.0 * sum(c.satisfied for c in cons) / len(cons)
    return ScoreResult(prompt or scene.text(), True, score, cons, tuple(objs), scene.task)


def relative_quality(score: float, full_score: float) -> float:
    """min(1, score / full_score); 1 when the full image scores 0 (see the module docstring)."""
    if not (math.isfinite(score) and math.isfinite(full_score)):
        raise ValueError(f"scores must be finite, got {score} and {full_score}")
    if score >= full_score:
        return 1.0
    return max(0.0, score / full_score)


@dataclass
class ExactScorer:
    """The exact scorer behind `argus profile --scorer exact` (same interface as `ClipScorer`)."""

    params: Params = field(default_factory=Params)
    name: str = "exact:world"
    kind: str = KIND

    def score(self, images: list[np.ndarray], prompts: list[str]) -> np.ndarray:
        """Score 0-100 of each image against its prompt, NaN where the prompt is not scorable."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        return np.array([np.nan if (r := score_image(im, p, self.params)).score is None else r.score
                         for im, p in zip(images, prompts)], dtype=np.float64)

    def relative_quality(self, score: float, full_score: float) -> float:
        """Relative quality in percent (the profile's unit): 100 x `relative_quality`."""
        return 100.0 * relative_quality(score, full_score)
