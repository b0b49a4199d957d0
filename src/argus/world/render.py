"""Draw a random image that satisfies a scene: coloured shapes on a plain grey background.

Deterministic per seed. Within the scene's constraints everything varies: the background's grey
level and tint, each object's size, position and exact colour (a jitter around its named colour),
and the colour of objects whose colour the prompt leaves open. Objects never touch (their boxes
keep `GAP` pixels apart), so an exact scorer can count them. `layout` and `draw` are separate so
that tests can break one constraint of a correct layout (a corrupted image).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from argus.world.grammar import COLOURS, SHAPES, Scene

SIZE = 64
# Half-size of an object's box in pixels, by how many objects the scene has: as large as the scene
# leaves room for (a 64x64 image fits four objects of half-size 10 with their gaps). An object spans
# 4-6 cells of the model's 16x16 latent, so its shape is drawable, not a 2-3-cell blob.
R_BY_COUNT = {1: (9, 13), 2: (8, 12), 3: (7, 11), 4: (7, 10)}
R_MIN = min(lo for lo, _ in R_BY_COUNT.values())
R_MAX = max(hi for _, hi in R_BY_COUNT.values())
GAP = 3  # minimum pixels between two objects' boxes
MARGIN = 2  # minimum pixels between an object's box and the image edge
COLOUR_JITTER = 14
BACKGROUND = (70, 190)  # grey level range
BACKGROUND_TINT = 6


@dataclass(frozen=True)
class Obj:
    """One drawn object: shape, named colour, the exact RGB used, centre and half-size (pixels)."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    cx: float
    cy: float
    r: float


def relation_holds(a: tuple[float, float], b: tuple[float, float], relation: str) -> bool:
    """Whether centre `a` is `relation` of centre `b` (image y grows downwards).

    The dominant axis decides: 'left of' means b is further right than it is above or below.
    """
    dx, dy = b[0] - a[0], b[1] - a[1]
    if relation == "left of":
        return dx > 0 and abs(dx) > abs(dy)
    if relation == "right of":
        return dx < 0 and abs(dx) > abs(dy)
    if relation == "above":
        return dy > 0 and abs(dy) > abs(dx)
    if relation == "below":
        return dy < 0 and abs(dy) > abs(dx)
    raise ValueError(f"unknown relation {relation!r}")


def _apart(a: Obj, b: Obj) -> bool:
    need = a.r + b.r + GAP
    return abs(a.cx - b.cx) >= need or abs(a.cy - b.cy) >= need


def _colour(rng: np.random.Generator, name: str) -> tuple[int, int, int]:
    base = np.array(COLOURS[name], dtype=float)
    return tuple(int(v) for v in np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))


def _position_ok(objs: list[Obj], scene: Scene) -> bool:
    """For position scenes: the relation holds with a clear margin (dominant axis >= 1.5x the other)."""
    if scene.task != "position":
        return True
    a, b = objs
    dx, dy = abs(b.cx - a.cx), abs(b.cy - a.cy)
    dom, other = (dx, dy) if scene.relation in ("left of", "right of") else (dy, dx)
    return relation_holds((a.cx, a.cy), (b.cx, b.cy), scene.relation) and dom >= 1.5 * other


def layout(scene: Scene, seed: int, size: int = SIZE) -> list[Obj]:
    """Random objects satisfying `scene` (rejection sampling; deterministic per seed)."""
    rng = np.random.default_rng([seed, 1])
    wanted = [(g.shape, g.colour) for g in scene.groups for _ in range(g.count)]
    r_min, r_max = R_BY_COUNT[len(wanted)]
    for _ in range(2000):
        objs: list[Obj] = []
        for shape, colour in wanted:
            r = float(rng.integers(r_min, r_max + 1))
            lo, hi = r + MARGIN, size - 1 - r - MARGIN
            name = colour or list(COLOURS)[int(rng.integers(len(COLOURS)))]
            o = Obj(shape, name, _colour(rng, name), float(rng.integers(lo, hi + 1)), float(rng.integers(lo, hi + 1)), r)
            if not all(_apart(o, p) for p in objs):
                break
            objs.append(o)
        if len(objs) == len(wanted) and _position_ok(objs, scene):
            return objs
    raise RuntimeError(f"no layout found for {scene.text()!r} (seed {seed})")


def background(seed: int) -> tuple[int, int, int]:
    """The background colour of image `seed`: a grey level with a slight tint."""
    rng = np.random.default_rng([seed, 2])
    g = int(rng.integers(BACKGROUND[0], BACKGROUND[1] + 1))
    return tuple(int(np.clip(g + t, 0, 255)) for t in rng.integers(-BACKGROUND_TINT, BACKGROUND_TINT + 1, 3))


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int = SIZE) -> np.ndarray:
    """Boolean mask of one shape, sampled at pixel centres."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r + 0.5
    if shape == "square":
        s = 0.85 * r
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "triangle":  # apex up, base 2r wide at the bottom
        t = (dy + r) / (2 * r)
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= r * t + 0.25)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r + 0.25
    raise ValueError(f"unknown shape {shape!r}: expected one of {', '.join(SHAPES)}")


def draw(objs: list[Obj], bg: tuple[int, int, int], size: int = SIZE) -> np.ndarray:
    """An HxWx3 uint8 image of `objs` on a plain background."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = bg
    for o in objs:
        img[shape_mask(o.shape, o.cx, o.cy, o.r, size)] = o.rgb
    return img


def render(scene: Scene, seed: int, size: int = SIZE) -> np.ndarray:
    """A random image that satisfies `scene`, deterministic per seed."""
    return draw(layout(scene, seed, size), background(seed), size)


def moved(o: Obj, cx: float, cy: float) -> Obj:
    """`o` at another centre."""
    return replace(o, cx=cx, cy=cy)
