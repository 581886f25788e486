"""The synthetic worlds: what differs between them (backgrounds, shapes, sizes, speeds, distractors), how
their shapes and backgrounds are drawn.

"default" is the world the project's demo and tests were tuned on. The others keep its questions and
its MSVD-QA layout but change what the videos look like, so a model can be trained on one world and
reported on another it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from configs.errors import UserError

FLAT_BACKGROUND: tuple[int, int, int] = (40, 40, 40)
BACKGROUNDS: tuple[str, ...] = ("flat", "noise", "texture")
_PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class World:
    """One family of synthetic videos: every attribute a world may change."""

    name: str
    backgrounds: tuple[str, ...] = ("flat",)  # drawn per video, balanced, from BACKGROUNDS
    shapes: tuple[str, ...] = ("circle", "square", "triangle")  # the answers of the "who" question
    size_range: tuple[float, float] = (0.25, 0.25)  # shape size as a fraction of the short side, per video
    fast_travel: float = 0.95  # a fast object's travel, as a fraction of the room its size leaves free
    fast_over_slow: float = 2.5  # how much further a fast object travels than a slow one
    distractor: bool = False  # a second, static shape of another colour and shape

    @property
    def fixed_size(self) -> bool:
        return self.size_range[0] == self.size_range[1]


WORLDS: dict[str, World] = {
    world.name: world
    for world in (
        World("default"),
        # Noise or striped textures in place of the flat grey, in a colour of their own per video.
        World("textured", backgrounds=("noise", "texture")),
        # Shapes the default world never draws, at sizes from under a fifth to a third of the short side.
        World("shapes", shapes=("diamond", "cross", "ring"), size_range=(0.18, 0.33)),
        # Other speeds, closer together: slow objects cover 0.45 of the room, fast ones 0.8.
        World("fast", fast_travel=0.8, fast_over_slow=0.8 / 0.45),
        # A second, still object of another colour and shape that the questions never ask about.
        World("distractors", distractor=True),
        # Everything at once: the hardest transfer.
        World("mixed", backgrounds=("noise", "texture"), shapes=("diamond", "cross", "ring", "circle"),
              size_range=(0.18, 0.33), fast_travel=0.8, fast_over_slow=0.8 / 0.45, distractor=True),
    )
}


@dataclass(frozen=True)
class Distractor:
    """A still shape drawn under the moving one, of a colour and shape the moving one never has."""

    shape: str
    color: str
    size: int
    center: tuple[float, float]


def world_named(name: str) -> World:
    """The world called `name`; a UserError naming the choices for any other name."""
    if name not in WORLDS:
        raise UserError(f"unknown synthetic world {name!r} (dataset.synthetic.world / --world): "
                        f"choose one of {', '.join(WORLDS)}.")
    return WORLDS[name]


def plan_sizes(world: World, videos: int, short_side: int, rng: np.random.Generator) -> list[int]:
    """The moving shape's size in pixels, per video."""
    low, high = world.size_range
    if world.fixed_size:  # no draws: the default world's streams stay exactly as they always were
        return [round(short_side * low)] * videos
    return [round(short_side * float(f)) for f in rng.uniform(low, high, size=videos)]


def plan_distractor(world: World, shape: str, colors: list[str], moving_colors: tuple[str, str], size: int,
                    path: tuple[tuple[float, float], tuple[float, float]], width: int, height: int,
                    rng: np.random.Generator) -> Distractor:
    """A still shape whose colour is neither of the moving shape's and whose shape is another of the world's,
    placed off the moving shape's path where the frame leaves room for it."""
    other_colors = [c for c in colors if c not in moving_colors]
    other_shapes = [s for s in world.shapes if s != shape]
    half = size / 2
    (x0, y0), (x1, y1) = path
    for _ in range(_PLACEMENT_TRIES):  # a few seeded tries; a crowded frame keeps the last one (drawn underneath)
        center = (float(rng.uniform(half, width - half)), float(rng.uniform(half, height - half)))
        clear_x = center[0] + half < min(x0, x1) - half or center[0] - half > max(x0, x1) + half
        clear_y = center[1] + half < min(y0, y1) - half or center[1] - half > max(y0, y1) + half
        if clear_x or clear_y:
            break
    return Distractor(shape=other_shapes[int(rng.integers(len(other_shapes)))],
                      color=other_colors[int(rng.integers(len(other_colors)))], size=size, center=center)


def shape_mask(shape: str, size: int, cx: float, cy: float, width: int, height: int) -> np.ndarray:
    """[height, width] bool: the pixels a `size`-pixel `shape` centred at (cx, cy) covers."""
    half = size / 2
    # Pixel centres sit at integer + 0.5.
    dx = (np.arange(width) + 0.5 - cx)[None, :]
    dy = (np.arange(height) + 0.5 - cy)[:, None]
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        # Apex up, base down: the half-width grows linearly from 0 at the top to `half` at the base.
        return (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= half
    if shape == "cross":
        arm = half / 3  # arms a third of the size wide, so the cross never reads as a square
        return ((np.abs(dx) <= half) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= half) & (np.abs(dx) <= arm))
    if shape == "ring":
        r2 = dx * dx + dy * dy
        return (r2 <= half * half) & (r2 >= (0.55 * half) ** 2)
    raise UserError(f"unknown synthetic shape {shape!r}.")


def background_image(kind: str, seed: int, width: int, height: int) -> np.ndarray:
    """[height, width, 3] uint8 background of one video.

    Every kind stays dark and unsaturated (channels at most 130), so the six saturated object colours
    remain the brightest, most colourful things in the frame.
    """
    if kind == "flat":
        return np.broadcast_to(np.array(FLAT_BACKGROUND, dtype=np.uint8), (height, width, 3)).copy()
    rng = np.random.default_rng(seed)
    base = rng.uniform(25, 70, size=3)  # a dark tint of its own per video
    if kind == "noise":
        image = base + rng.normal(0.0, 18.0, size=(height, width, 3))
    elif kind == "texture":
        # Stripes at a random angle and frequency, with a checker of another period and mild grain.
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        cycles, cells = rng.uniform(3, 9), int(rng.integers(4, 12))
        ys, xs = np.mgrid[0:height, 0:width].astype(float)
        along = (xs * np.cos(angle) + ys * np.sin(angle)) / max(width, height)
        stripes = 28.0 * np.sin(2 * np.pi * cycles * along + phase)
        checker = 12.0 * ((xs // (width / cells) + ys // (height / cells * 0.75)) % 2)
        tint = rng.uniform(0.6, 1.0, size=3)  # the stripes tinted per channel, so they carry colour too
        image = base + (stripes + checker)[..., None] * tint + rng.normal(0.0, 5.0, size=(height, width, 3))
    else:
        raise UserError(f"unknown synthetic background {kind!r}: choose one of {', '.join(BACKGROUNDS)}.")
    return np.clip(np.rint(image), 0, 130).astype(np.uint8)
