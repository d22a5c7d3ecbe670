"""Procedural "gameplay" with a fork: the built-in sample data of ``make demo`` and the tests.

A top-down level: a vertical corridor leads up to a T-junction. The character (a yellow 6x6
square) walks up the corridor at a constant speed, reaches the junction, and then — with
probability 1/2 each — walks left or right. That single coin flip is the *only* randomness a
model cannot infer from the past frames: the multimodal case a GAN must get right and an L1
model blurs. Elsewhere in the frame something moves on a fixed cycle (a patrolling block and a
blinking light, with a clock that runs on across episodes): the predictable part.

Episodes are short (so that ~1 training window in 4-5 ends at the fork) and separated by hard cuts: each
episode draws a new wall/floor palette, so a scene-cut detector sees a large frame difference.

Frames are uint8 ``(H, W, 3)`` RGB; the geometry is laid out for 64x64 and scaled for other sizes.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Geometry on the 64x64 reference grid (x to the right, y down; boxes are [x0, x1) x [y0, y1)).
GRID = 64
SPRITE = 6                       # character is SPRITE x SPRITE pixels
JUNCTION = (29, 10)              # sprite top-left when the character stands at the fork
VERTICAL = (26, 39)              # corridor x-range (wide enough for the sprite + margin)
HORIZONTAL = (8, 18)             # top corridor y-range
H_SPAN = (2, 62)                 # top corridor x-range
UP_SPEED = 3                     # pixels per frame while walking up
SIDE_SPEED = 4                   # pixels per frame after the fork (left: -4, right: +4)
APPROACH = (4, 6)                # frames walking up before (and including) the fork frame: [lo, hi)
AFTER = 4                        # frames after the fork before the episode ends (hard cut)
PATROL_PERIOD = 12               # the patrolling block's cycle, in frames
BLINK_PERIOD = 6                 # the light is on for half of this cycle

CHARACTER = (255, 214, 0)        # colour no palette uses, so the fork scorer can find it
PATROL = (0, 220, 230)
LIGHT_ON, LIGHT_OFF = (255, 60, 60), (90, 20, 20)
PALETTES = [                     # (wall, floor): one per episode, drawn at random
    ((40, 60, 140), (12, 12, 28)),
    ((120, 40, 110), (20, 8, 20)),
    ((30, 110, 60), (8, 22, 12)),
    ((130, 90, 40), (26, 18, 8)),
]
LEFT, RIGHT = -1, +1


@dataclass
class Episode:
    frames: np.ndarray   # uint8 (T, H, W, 3)
    fork: int            # index of the frame where the character stands at the junction
    branch: int          # LEFT or RIGHT: the coin flip taken after the fork
    clock: int           # global clock of frame 0 (drives the patrol and the light)
    palette: int         # index into PALETTES


def character_path(approach: int, branch: int, after: int = AFTER) -> list[tuple[int, int]]:
    """Sprite top-left positions: ``approach`` frames walking up to the junction, then sideways."""
    jx, jy = JUNCTION
    up = [(jx, jy + UP_SPEED * (approach - 1 - i)) for i in range(approach)]
    side = [(jx + branch * SIDE_SPEED * (i + 1), jy) for i in range(after)]
    return up + side


def render(clock: int, palette: int, char_xy: tuple[int, int] | None, size: int = GRID) -> np.ndarray:
    """One frame at global time ``clock`` with the character's sprite at ``char_xy`` (or absent)."""
    wall, floor = PALETTES[palette]
    img = np.empty((GRID, GRID, 3), np.uint8)
    img[:] = wall
    img[HORIZONTAL[0]:HORIZONTAL[1], H_SPAN[0]:H_SPAN[1]] = floor
    img[HORIZONTAL[1]:, VERTICAL[0]:VERTICAL[1]] = floor
    # Patrolling block: triangle wave along the bottom-left wall.
    phase = clock % PATROL_PERIOD
    px = 2 + 3 * (phase if phase <= PATROL_PERIOD // 2 else PATROL_PERIOD - phase)
    img[50:55, px:px + 5] = PATROL
    # Blinking light in the bottom-right wall.
    img[48:54, 50:56] = LIGHT_ON if (clock % BLINK_PERIOD) < BLINK_PERIOD // 2 else LIGHT_OFF
    if char_xy is not None:
        x, y = char_xy
        img[y:y + SPRITE, x:x + SPRITE] = CHARACTER
    if size != GRID:  # nearest keeps the sprite a crisp single-colour block
        idx = (np.arange(size) * GRID) // size
        img = img[idx][:, idx]
    return img


def episodes(n: int, seed: int = 0, size: int = GRID, clock: int = 0):
    """Yield ``n`` episodes; the global clock runs on across them."""
    rng = np.random.default_rng(seed)
    palette = int(rng.integers(len(PALETTES)))
    for _ in range(n):
        approach = int(rng.integers(*APPROACH))
        branch = LEFT if rng.random() < 0.5 else RIGHT
        # A new palette every episode, never the previous one: every episode boundary is a hard
        # cut that a frame-difference detector sees (the character alone would barely register).
        palette = (palette + int(rng.integers(1, len(PALETTES)))) % len(PALETTES)
        path = character_path(approach, branch)
        frames = np.stack([render(clock + i, palette, xy, size) for i, xy in enumerate(path)])
        yield Episode(frames, approach - 1, branch, clock, palette)
        clock += len(path)


def fork_futures(ep: Episode, horizon: int, size: int = GRID) -> dict[int, np.ndarray]:
    """Both possible futures after ``ep``'s fork frame: {LEFT: (T,H,W,3), RIGHT: (T,H,W,3)}."""
    out = {}
    jx, jy = JUNCTION
    for branch in (LEFT, RIGHT):
        frames = []
        for i in range(1, horizon + 1):
            x = jx + branch * SIDE_SPEED * i
            visible = H_SPAN[0] <= x and x + SPRITE <= H_SPAN[1]
            frames.append(render(ep.clock + ep.fork + i, ep.palette, (x, jy) if visible else None, size))
        out[branch] = np.stack(frames)
    return out


def write_sample_video(path: str | Path, n_episodes: int = 400, seed: int = 0, size: int = GRID,
                       fps: float = 15.0) -> dict:
    """Render ``n_episodes`` to an H.264 mp4 (yuv444p, near-lossless; see video.write_video)."""
    from framegan.video import write_video

    eps = list(episodes(n_episodes, seed, size))
    frames = (f for ep in eps for f in ep.frames)
    write_video(path, frames, fps=fps)
    return {"path": str(path), "episodes": n_episodes, "frames": sum(len(e.frames) for e in eps),
            "left_share": float(np.mean([e.branch == LEFT for e in eps]))}


def build_sample_store(root: str | Path, n_episodes: int = 400, seed: int = 0) -> Path:
    """Write the sample gameplay to ``<root>.mp4`` and extract it into the frame store ``root``."""
    from framegan.extract import extract

    root = Path(root)
    video = root.with_suffix(".mp4")
    root.parent.mkdir(parents=True, exist_ok=True)
    info = write_sample_video(video, n_episodes, seed)
    print(f"sample gameplay: {info['episodes']} episodes, {info['frames']} frames -> {video}")
    extract([video], root, size=(GRID, GRID), progress=False)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the built-in sample gameplay (fork game) to an mp4.")
    ap.add_argument("out", help="output .mp4")
    ap.add_argument("--episodes", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=GRID)
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.size < 8:
        print("error: --episodes must be >= 1 and --size >= 8", file=sys.stderr)
        return 2
    info = write_sample_video(args.out, args.episodes, args.seed, args.size)
    print(f"wrote {info['path']}: {info['episodes']} episodes, {info['frames']} frames, "
          f"left share {info['left_share']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
