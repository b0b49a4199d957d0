"""The prompt grammar: scenes (what a prompt asks for) and the text that asks for them.

A `Scene` is one of GenEval's six task types over `SHAPES` x `COLOURS`:

- single_object: "a photo of a circle"
- colors: "a photo of a red circle"
- counting: "a photo of three squares" / "... three blue squares" (2-4)
- two_object: "a photo of a circle and a square"
- color_attr: "a photo of a red circle and a blue square"
- position: "a photo of a red circle to the left of a square" (left of, right of, above, below)

Each scene is written with one of `TEMPLATES`; the 61,880 distinct prompt texts are split once
and for all into train (90 %) and held-out (10 %) by a hash of the text. `parse` turns any text of
the grammar back into its scene and returns None for a free-form prompt outside it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
# Hue-separated, saturated colours; the renderer draws them on a grey background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (235, 215, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 215),
    "blue": (35, 75, 225),
    "purple": (140, 55, 205),
    "pink": (240, 80, 185),
}
RELATIONS = ("left of", "right of", "above", "below")
TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
TEMPLATES = (
    "a photo of {}", "an image of {}", "a picture of {}", "a drawing of {}", "{}",
    "a rendering of {}", "a simple illustration of {}", "{} on a plain background",
    "a clean render of {}", "a small picture of {}",
)
HELD_OUT_PERCENT = 10
Task = Literal["single_object", "two_object", "counting", "colors", "position", "color_attr"]
Split = Literal["train", "held_out"]


@dataclass(frozen=True)
class Group:
    """`count` objects of one shape, all of `colour` (None: any colour, drawn at random)."""

    shape: str
    count: int = 1
    colour: str | None = None

    def text(self) -> str:
        """'a red circle', 'an orange square', 'three squares'."""
        noun = self.shape if self.count == 1 else self.shape + "s"
        words = " ".join(w for w in (self.colour, noun) if w)
        if self.count > 1:
            return f"{NUMBERS[self.count]} {words}"
        return ("an " if words[0] in "aeiou" else "a ") + words


@dataclass(frozen=True)
class Scene:
    """What a prompt asks for: one or two groups, and for `position` where the first is."""

    task: Task
    groups: tuple[Group, ...]
    relation: str | None = None  # position: groups[0] <relation> groups[1]

    def text(self) -> str:
        """The scene's description without a template: 'a red circle to the left of a square'."""
        if self.task == "position":
            rel = {"left of": "to the left of", "right of": "to the right of"}.get(self.relation, self.relation)
            return f"{self.groups[0].text()} {rel} {self.groups[1].text()}"
        return " and ".join(g.text() for g in self.groups)

    @property
    def n_objects(self) -> int:
        """Objects the image must hold."""
        return sum(g.count for g in self.groups)


@dataclass(frozen=True)
class Prompt:
    """One prompt text of the grammar and its scene."""

    text: str
    scene: Scene

    @property
    def split(self) -> Split:
        """The fixed split: 'held_out' for HELD_OUT_PERCENT % of texts (by a hash of the text)."""
        return split_of(self.text)


def split_of(text: str) -> Split:
    """Train or held-out, fixed by the SHA-256 of the prompt text."""
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    return "held_out" if h % 100 < HELD_OUT_PERCENT else "train"


def _coloured() -> list[tuple[str, str | None]]:
    return [(s, c) for s in SHAPES for c in (None, *COLOURS)]


@lru_cache(maxsize=1)
def scenes_by_task() -> dict[str, tuple[Scene, ...]]:
    """Every scene of the grammar, by task type (deterministic order)."""
    out: dict[str, list[Scene]] = {t: [] for t in TASKS}
    for s in SHAPES:
        out["single_object"].append(Scene("single_object", (Group(s),)))
        for c in COLOURS:
            out["colors"].append(Scene("colors", (Group(s, 1, c),)))
        for n in (2, 3, 4):
            for c in (None, *COLOURS):
                out["counting"].append(Scene("counting", (Group(s, n, c),)))
    for a in SHAPES:
        for b in SHAPES:
            if a != b:
                out["two_object"].append(Scene("two_object", (Group(a), Group(b))))
    plain = [(s, c) for s, c in _coloured() if c]
    for a in plain:
        for b in plain:
            if a != b:
                out["color_attr"].append(Scene("color_attr", (Group(a[0], 1, a[1]), Group(b[0], 1, b[1]))))
    for a in _coloured():
        for b in _coloured():
            if a == b:
                continue
            for rel in RELATIONS:
                out["position"].append(Scene("position", (Group(a[0], 1, a[1]), Group(b[0], 1, b[1])), rel))
    return {t: tuple(v) for t, v in out.items()}


@lru_cache(maxsize=1)
def all_prompts() -> tuple[Prompt, ...]:
    """Every distinct prompt text of the grammar (scene x template)."""
    return tuple(Prompt(t.format(sc.text()), sc) for scenes in scenes_by_task().values()
                 for sc in scenes for t in TEMPLATES)


@lru_cache(maxsize=2)
def prompts_of(split: Split) -> tuple[Prompt, ...]:
    """The prompts of one split, in grammar order."""
    return tuple(p for p in all_prompts() if p.split == split)


def sample(rng: np.random.Generator, split: Split, n: int, tasks: tuple[str, ...] = TASKS) -> list[Prompt]:
    """`n` prompts of `split`, the task type drawn uniformly first (so every task is equally present)."""
    by_task: dict[str, list[Prompt]] = {}
    for p in prompts_of(split):
        by_task.setdefault(p.scene.task, []).append(p)
    out = []
    for i in range(n):
        pool = by_task[tasks[i % len(tasks)] if n >= len(tasks) else tasks[int(rng.integers(len(tasks)))]]
        out.append(pool[int(rng.integers(len(pool)))])
    return out


_NUM = {v: k for k, v in NUMBERS.items()}
_GROUP = r"(?:(?:a|an|one)|(?P<n{i}>two|three|four)) (?:(?P<c{i}>{colours}) )?(?P<s{i}>{shapes})s?"


@lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern, ...]:
    colours, shapes = "|".join(COLOURS), "|".join(SHAPES)
    g1 = _GROUP.format(i=1, colours=colours, shapes=shapes)
    g2 = _GROUP.format(i=2, colours=colours, shapes=shapes)
    joint = r"(?P<rel>and|to the left of|to the right of|above|below)"
    desc = rf"{g1}(?: {joint} {g2})?"
    return tuple(re.compile("^" + re.escape(t).replace(r"\{\}", f"(?:{desc})") + "$") for t in TEMPLATES)


def parse(text: str) -> Scene | None:
    """The scene a prompt of the grammar asks for; None for text outside the grammar."""
    t = " ".join(text.lower().strip().rstrip(".").split())
    for pat in _patterns():
        m = pat.match(t)
        if m:
            break
    else:
        return None
    groups = []
    for i in (1, 2):
        if m.group(f"s{i}"):
            n = _NUM.get(m.group(f"n{i}") or "", 1)
            groups.append(Group(m.group(f"s{i}"), n, m.group(f"c{i}")))
    rel = m.group("rel")
    if rel and rel != "and":
        relation = {"to the left of": "left of", "to the right of": "right of"}.get(rel, rel)
        return Scene("position", tuple(groups), relation)
    if len(groups) == 2:
        both_coloured = all(g.colour for g in groups)
        return Scene("color_attr" if both_coloured else "two_object", tuple(groups))
    g = groups[0]
    if g.count > 1:
        return Scene("counting", (g,))
    return Scene("colors" if g.colour else "single_object", (g,))
