"""Corrupted images: a correct layout with exactly one constraint of its prompt broken.

Used to measure the exact scorer: a corruption counts only if it breaks something the prompt
states, so every corrupted image should be caught (judged not fully correct). Kinds:

- colour_changed: an object whose colour the prompt names gets another palette colour;
- colour_swapped: two objects of different colours swap them (at least one colour is named; same-shape
  objects only where their positions are stated);
- object_added: one more object (any shape and colour) where it touches nothing;
- object_removed: one object is left out;
- shape_changed: an object becomes another shape;
- positions_swapped: the two objects of a position prompt swap centres (unless they look the same:
  "a cyan triangle left of a triangle" whose second triangle happens to be cyan too).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from argus.world.grammar import COLOURS, SHAPES, Scene
from argus.world.render import GAP, MARGIN, R_MAX, R_MIN, SIZE, Obj, background, draw, layout

KINDS = ("colour_changed", "colour_swapped", "object_added", "object_removed", "shape_changed",
         "positions_swapped")
JITTER = 14


def _rgb(rng: np.random.Generator, name: str) -> tuple[int, int, int]:
    base = np.array(COLOURS[name], dtype=float)
    return tuple(int(v) for v in np.clip(base + rng.integers(-JITTER, JITTER + 1, 3), 0, 255))


def _named(scene: Scene) -> list[int]:
    """Indices (in layout order) of objects whose colour the prompt names."""
    out, i = [], 0
    for g in scene.groups:
        for _ in range(g.count):
            if g.colour:
                out.append(i)
            i += 1
    return out


def applicable(scene: Scene, objs: list[Obj]) -> list[str]:
    """The corruption kinds that break a constraint `scene` states, for this layout."""
    kinds = ["object_added", "object_removed", "shape_changed"]
    if _named(scene):
        kinds.append("colour_changed")
        a, b = (objs + [None, None])[:2]
        # same-shape objects swapping colours change nothing the prompt states, except where they are
        if len(objs) == 2 and a.colour != b.colour and (a.shape != b.shape or scene.task == "position"):
            kinds.append("colour_swapped")
    if scene.task == "position" and (objs[0].shape, objs[0].colour) != (objs[1].shape, objs[1].colour):
        kinds.append("positions_swapped")  # two identical-looking objects swapped: the same image
    return kinds


def _apart(a: Obj, b: Obj) -> bool:
    need = a.r + b.r + GAP  # the renderer's rule: boxes GAP pixels apart on some axis
    return abs(a.cx - b.cx) >= need or abs(a.cy - b.cy) >= need


def _added(rng: np.random.Generator, objs: list[Obj], size: int) -> Obj | None:
    for _ in range(2000):
        r = float(rng.integers(R_MIN, R_MAX + 1))
        lo, hi = r + MARGIN, size - 1 - r - MARGIN
        name = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        o = Obj(SHAPES[int(rng.integers(len(SHAPES)))], name, _rgb(rng, name),
                float(rng.integers(lo, hi + 1)), float(rng.integers(lo, hi + 1)), r)
        if all(_apart(o, p) for p in objs):
            return o
    return None


def corrupt_layout(scene: Scene, objs: list[Obj], kind: str, rng: np.random.Generator,
                   size: int = SIZE) -> list[Obj] | None:
    """`objs` with one constraint of `scene` broken by `kind`; None if it cannot be applied here."""
    objs = list(objs)
    if kind not in applicable(scene, objs):
        return None
    if kind == "object_added":
        o = _added(rng, objs, size)
        return None if o is None else objs + [o]
    if kind == "object_removed":
        del objs[int(rng.integers(len(objs)))]
        return objs
    if kind == "shape_changed":
        i = int(rng.integers(len(objs)))
        others = [s for s in SHAPES if s != objs[i].shape]
        objs[i] = replace(objs[i], shape=others[int(rng.integers(len(others)))])
        return objs
    if kind == "colour_changed":
        named = _named(scene)
        i = named[int(rng.integers(len(named)))]
        others = [c for c in COLOURS if c != objs[i].colour]
        c = others[int(rng.integers(len(others)))]
        objs[i] = replace(objs[i], colour=c, rgb=_rgb(rng, c))
        return objs
    if kind == "colour_swapped":
        a, b = objs
        return [replace(a, colour=b.colour, rgb=b.rgb), replace(b, colour=a.colour, rgb=a.rgb)]
    if kind == "positions_swapped":
        a, b = objs
        return [replace(a, cx=b.cx, cy=b.cy), replace(b, cx=a.cx, cy=a.cy)]
    raise ValueError(f"unknown corruption {kind!r}: expected one of {', '.join(KINDS)}")


def corrupted_layout(scene: Scene, seed: int, size: int = SIZE) -> tuple[str, list[Obj]]:
    """The objects of a corrupted image of `scene`: a kind drawn uniformly among those that apply."""
    rng = np.random.default_rng([seed, 3])
    objs = layout(scene, seed, size)
    kinds = applicable(scene, objs)
    for kind in rng.permutation(kinds):
        bad = corrupt_layout(scene, objs, str(kind), rng, size)
        if bad is not None:
            return str(kind), bad
    raise RuntimeError(f"no corruption applies to {scene.text()!r} (seed {seed})")


def corrupted(scene: Scene, seed: int, size: int = SIZE) -> tuple[str, np.ndarray]:
    """A corrupted image of `scene` and its kind, deterministic per seed."""
    kind, objs = corrupted_layout(scene, seed, size)
    return kind, draw(objs, background(seed), size)


def drifted(objs: list[Obj], rng: np.random.Generator, amount: float = 0.35) -> list[Obj]:
    """Each object's colour moved `amount` of the way toward a palette neighbour in hue (either side)."""
    names = list(COLOURS)  # in hue order, red .. pink
    out = []
    for o in objs:
        i = names.index(o.colour)
        other = COLOURS[names[(i + (1 if rng.random() < 0.5 else -1)) % len(names)]]
        out.append(replace(o, rgb=tuple(int(round((1 - amount) * a + amount * b)) for a, b in zip(o.rgb, other))))
    return out


def degrade(image: np.ndarray, rng: np.random.Generator, blur_sigma: float = 0.8, noise: float = 6.0) -> np.ndarray:
    """`image` blurred with a Gaussian and given additive Gaussian noise (a stand-in for a model's softness)."""
    from scipy import ndimage

    f = ndimage.gaussian_filter(image.astype(float), sigma=(blur_sigma, blur_sigma, 0))
    f = f + rng.normal(0.0, noise, f.shape)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)
