"""Procedural "gameplay" with a fork: the built-in sample data, and a family of fork games.

A top-down level: a corridor leads up to a junction. The character (a single-colour square) walks
up the corridor at a constant speed, reaches the junction, and then takes one of the junction's
branches, each with the same probability. That draw is the *only* randomness a model cannot
infer from the past frames: the multimodal case a GAN must get right and an L1 model blurs.
Everything else is drawn per episode and is visible in the episode's first frames: where the
junction is, how long the walk up is, the wall and floor colours (and texture), and the phase
of the distractors (a patrolling block and a blinking light moving on fixed cycles: the
predictable part). That variety is what lets the fork experiment score on contexts that never
occur in training (``framegan.experiments.fork``).

A game of the family is a ``ForkGame``: track shape (a T-junction, a Y with diagonal branches, or a
'+' with three branches), junction range, sprite size and colour, speeds, background, distractors.
``GAMES`` names a few; ``default`` is the sample game of ``make demo`` and the tests (a T-junction,
left or right 50/50), the others are held out from every design decision:

    python -m framegan.sample_game OUT.mp4 [--game default|y|three_way|small_fast|textured]
        [--episodes N] [--seed S] [--size PX]      (--list: the games)

Episodes are short (so that ~1 training window in 4-5 ends at the fork) and separated by hard
cuts: consecutive episodes never share a wall colour, so a frame-difference detector sees each
cut, and ``OUT.cuts.npy`` lists the episode starts for an extractor that reads it.

Frames are uint8 ``(H, W, 3)`` RGB; the geometry is laid out on a 64x64 grid and scaled (nearest)
for other sizes. Episode generation is deterministic in (game, seed, number of episodes).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from einops import repeat

from framegan.cli import Parser, UsageError, run_main

GRID = 64                        # reference grid; boxes are [x0, x1) x [y0, y1), x right, y down
DISTRACTOR_TOP = 48              # distractors live in rows >= this; the character stays above
PATROL = (0, 220, 230)
LIGHT_ON, LIGHT_OFF = (255, 60, 60), (90, 20, 20)
# Unit steps of each track's branches, in the order branch indices refer to.
TRACKS = {
    "T": (("left", (-1, 0)), ("right", (1, 0))),
    "Y": (("up-left", (-1, -1)), ("up-right", (1, -1))),
    "plus": (("left", (-1, 0)), ("up", (0, -1)), ("right", (1, 0))),
}
# Colour draws: background colours keep this Euclidean RGB distance from the character (so the
# fork scorer's alpha, a projection on character - background, stays well conditioned) ...
MIN_CHARACTER_DISTANCE = 140
# ... and consecutive episodes' walls differ by this mean |delta| per channel: the walls fill most
# of the frame, so a cut moves 16x16 thumbnails by > 0.1, past framegan.scenecut's colour gate
# (0.03), and the new palette on a familiar layout is what its recolour test calls a cut (357 of
# 399 episode starts of the sample game found, no false cut; benchmarks/scenecut_quality.py).
# The recorder's .cuts.npy marks every start anyway.
MIN_WALL_CHANGE = 50


def _distance(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


@dataclass(frozen=True)
class ForkGame:
    """One fork game: everything fixed for all its episodes. Ranges are ``[lo, hi)``."""

    name: str = "default"
    track: str = "T"                              # T | Y | plus (see TRACKS)
    junction_x: tuple[int, int] = (17, 42)        # sprite top-left x at the fork, drawn per episode
    junction_y: tuple[int, int] = (8, 13)         # ... and y
    sprite: int = 6                               # the character is sprite x sprite pixels
    colour: tuple[int, int, int] = (255, 214, 0)  # character colour (no background comes close)
    up_speed: int = 3                             # pixels per frame walking up to the junction
    side_speed: int = 4                           # pixels per frame (per axis) along a branch
    approach: tuple[int, int] = (4, 7)            # frames walking up, fork frame included
    after: int = 4                                # frames after the fork, then a hard cut
    margin: int = 3                               # floor visible around the sprite's path
    texture: int = 0                              # amplitude of per-episode background noise
    distractors: bool = True                      # patrolling block + blinking light
    patrol_period: int = 12                       # frames per patrol cycle
    blink_period: int = 6                         # the light is on for half of this

    def __post_init__(self):
        problem = self.problem()
        if problem:
            raise ValueError(f"fork game {self.name!r}: {problem}")

    @property
    def branches(self) -> list[tuple[str, tuple[int, int]]]:
        """``(name, (dx, dy) per frame)`` of each branch, in branch-index order."""
        v = self.side_speed
        return [(name, (ux * v, uy * v)) for name, (ux, uy) in TRACKS[self.track]]

    @property
    def branch_names(self) -> list[str]:
        return [name for name, _ in self.branches]

    def problem(self) -> str | None:
        """Why this spec cannot be played or scored (None when fine)."""
        if self.track not in TRACKS:
            return f"track {self.track!r} is not one of {', '.join(TRACKS)}"
        for key in ("junction_x", "junction_y", "approach"):
            lo, hi = getattr(self, key)
            if not lo < hi:
                return f"{key} range [{lo}, {hi}) is empty"
        if min(self.sprite, self.up_speed, self.side_speed, self.approach[0], self.after) < 1:
            return "sprite, speeds, approach and after must be >= 1"
        s = self.sprite
        for x in (self.junction_x[0], self.junction_x[1] - 1):   # paths are straight lines:
            for y in (self.junction_y[0], self.junction_y[1] - 1):  # the extremes bound them
                low = y + self.up_speed * (self.approach[1] - 2)  # first frame of the longest walk
                if low + s > DISTRACTOR_TOP:
                    return f"the walk up reaches row {low + s}, into the distractors (>= {DISTRACTOR_TOP})"
                for name, (dx, dy) in self.branches:
                    bx, by = x + dx * self.after, y + dy * self.after
                    if not (0 <= bx and bx + s <= GRID and 0 <= by and by + s <= GRID):
                        return f"branch {name} leaves the {GRID}x{GRID} frame within {self.after} frames"
        near = min(_distance(self.colour, c) for c in (PATROL, LIGHT_ON, LIGHT_OFF))
        if near < 100:
            return f"colour {self.colour} is too close to a distractor's"
        return None

    @classmethod
    def from_dict(cls, d: dict) -> ForkGame:
        """Inverse of ``dataclasses.asdict`` (JSON turns tuples into lists)."""
        kinds = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in kinds})


GAMES = {g.name: g for g in (
    ForkGame(),
    ForkGame(name="y", track="Y", junction_x=(14, 45), junction_y=(20, 26), side_speed=3,
             colour=(255, 80, 200)),
    ForkGame(name="three_way", track="plus", junction_y=(22, 27), colour=(240, 240, 240)),
    ForkGame(name="small_fast", sprite=4, up_speed=4, side_speed=6, junction_x=(25, 37),
             junction_y=(8, 14), colour=(170, 255, 40)),
    ForkGame(name="textured", texture=24, margin=4),
)}
DESCRIPTIONS = {
    "default": "T-junction, left/right 50/50, 6 px yellow sprite (the sample game)",
    "y": "Y-junction with diagonal branches, magenta sprite, slower branches",
    "three_way": "'+' junction: left, up or right, 1/3 each, white sprite",
    "small_fast": "T-junction, 4 px lime sprite, faster walk and branches",
    "textured": "the default track on a noise-textured background",
}


def get_game(game: ForkGame | str) -> ForkGame:
    if isinstance(game, ForkGame):
        return game
    if game not in GAMES:
        raise ValueError(f"no fork game {game!r}; known: {', '.join(GAMES)}")
    return GAMES[game]


@dataclass
class Scene:
    """What one episode drew, besides the branch: enough to render any of its frames again."""

    junction: tuple[int, int]   # sprite top-left at the fork
    approach: int               # frames walking up, fork frame included
    phase: int                  # distractor clock at frame 0
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    layout: np.ndarray          # uint8 (GRID, GRID, 3): walls, floor, texture (no distractors)


@dataclass
class Episode:
    frames: np.ndarray   # uint8 (T, H, W, 3)
    fork: int            # index of the frame where the character stands at the junction
    branch: int          # index into game.branches: the draw taken after the fork
    scene: Scene
    game: ForkGame


def floor_mask(game: ForkGame, junction: tuple[int, int]) -> np.ndarray:
    """Boolean (GRID, GRID): the corridor swept by the sprite (plus margin) from the bottom edge
    up to the junction and along every branch to the frame's edge."""
    m = np.zeros((GRID, GRID), bool)
    jx, jy = junction
    s, g = game.sprite, game.margin
    units = [(0, 1)] + [u for _, u in TRACKS[game.track]]   # (0, 1): back down the approach
    for ux, uy in units:
        for j in range(GRID):
            x, y = jx + j * ux, jy + j * uy
            m[max(y - g, 0):max(y + s + g, 0), max(x - g, 0):max(x + s + g, 0)] = True
    return m


def draw_scene(game: ForkGame, rng: np.random.Generator, previous_wall=None) -> Scene:
    junction = (int(rng.integers(*game.junction_x)), int(rng.integers(*game.junction_y)))
    approach = int(rng.integers(*game.approach))
    phase = int(rng.integers(math.lcm(game.patrol_period, game.blink_period)))
    for _ in range(10_000):  # rejection sampling keeps every constraint exact; a few draws on average
        wall = rng.integers(40, 201, 3)
        floor = (wall * rng.uniform(0.12, 0.4)).astype(int)
        ok = (min(_distance(wall, game.colour), _distance(floor, game.colour)) >= MIN_CHARACTER_DISTANCE
              and min(_distance(wall, c) for c in (PATROL, LIGHT_ON, LIGHT_OFF)) >= 80
              and (previous_wall is None or np.abs(wall - np.asarray(previous_wall)).mean() >= MIN_WALL_CHANGE))
        if ok:
            break
    else:
        raise ValueError(f"fork game {game.name!r}: no wall/floor colours keep away from colour {game.colour}")
    layout = np.empty((GRID, GRID, 3), np.int16)
    layout[:] = wall
    layout[floor_mask(game, junction)] = floor
    if game.texture:  # 2x2-pixel grey noise, fixed for the episode
        noise = rng.integers(-game.texture, game.texture + 1, (GRID // 2, GRID // 2))
        layout += repeat(noise, "h w -> (h 2) (w 2) 1")
    return Scene(junction, approach, phase, tuple(map(int, wall)), tuple(map(int, floor)),
                 layout.clip(0, 255).astype(np.uint8))


def position(game: ForkGame, scene: Scene, t: int, branch: int) -> tuple[int, int]:
    """Sprite top-left in frame ``t`` of an episode taking ``branch`` at the fork."""
    (jx, jy), fork = scene.junction, scene.approach - 1
    if t <= fork:
        return jx, jy + game.up_speed * (fork - t)
    dx, dy = game.branches[branch][1]
    return jx + dx * (t - fork), jy + dy * (t - fork)


def render(game: ForkGame, scene: Scene, t: int, char_xy: tuple[int, int] | None,
           size: int = GRID) -> np.ndarray:
    """Frame ``t`` of an episode with the character's sprite at ``char_xy`` (or absent)."""
    img = scene.layout.copy()
    if game.distractors:
        clock = scene.phase + t
        half = game.patrol_period // 2
        phase = clock % game.patrol_period
        px = 2 + 3 * (phase if phase <= half else game.patrol_period - phase)  # triangle wave
        img[50:55, px:px + 5] = PATROL
        on = clock % game.blink_period < game.blink_period // 2
        img[48:54, 50:56] = LIGHT_ON if on else LIGHT_OFF
    if char_xy is not None:
        x, y = char_xy
        img[max(y, 0):max(y + game.sprite, 0), max(x, 0):max(x + game.sprite, 0)] = game.colour
    if size != GRID:  # nearest keeps the sprite a crisp single-colour block
        idx = (np.arange(size) * GRID) // size
        img = img[idx][:, idx]
    return img


def episodes(n: int, seed: int = 0, size: int = GRID, game: ForkGame | str = "default"):
    """Yield ``n`` episodes of ``game``; the same (game, seed) always gives the same episodes."""
    game = get_game(game)
    rng = np.random.default_rng(seed)
    wall = None
    for _ in range(n):
        scene = draw_scene(game, rng, wall)
        wall = scene.wall
        branch = int(rng.integers(len(game.branches)))
        frames = np.stack([render(game, scene, t, position(game, scene, t, branch), size)
                           for t in range(scene.approach + game.after)])
        yield Episode(frames, scene.approach - 1, branch, scene, game)


def fork_futures(ep: Episode, horizon: int, size: int = GRID) -> list[np.ndarray]:
    """Every possible future after ``ep``'s fork frame, exactly: one uint8 (T, H, W, 3) per branch."""
    game = ep.game
    return [np.stack([render(game, ep.scene, t, position(game, ep.scene, t, b), size)
                      for t in range(ep.fork + 1, ep.fork + 1 + horizon)])
            for b in range(len(game.branches))]


def write_sample_video(path: str | Path, n_episodes: int = 400, seed: int = 0, size: int = GRID,
                       fps: float = 15.0, game: ForkGame | str = "default") -> dict:
    """Render ``n_episodes`` of ``game`` to an H.264 mp4 (yuv444p, near-lossless; see
    video.write_video), and the episode starts to ``<stem>.cuts.npy`` beside it."""
    from framegan.actions import CUTS, sidecar
    from framegan.atomic import atomic_path
    from framegan.video import write_video

    game = get_game(game)
    path = Path(path)
    eps = list(episodes(n_episodes, seed, size, game))
    write_video(path, (f for ep in eps for f in ep.frames), fps=fps)
    starts = np.cumsum([0] + [len(e.frames) for e in eps[:-1]]).astype(np.int64)
    # not actions.write_sidecars: that always writes a .actions.npy, and this game has no player input
    with atomic_path(sidecar(path, CUTS)) as tmp, open(tmp, "wb") as f:
        np.save(f, starts)
    counts = np.bincount([e.branch for e in eps], minlength=len(game.branches))
    return {"path": str(path), "game": game.name, "episodes": n_episodes,
            "frames": sum(len(e.frames) for e in eps),
            "branch_share": dict(zip(game.branch_names, (counts / n_episodes).tolist()))}


def record_path(root: str | Path) -> Path:
    """Where ``build_sample_store`` notes which (game, seed, episodes) a store was made from."""
    root = Path(root)
    return root.parent / f"{root.name}.game.json"


def read_record(root: str | Path) -> dict | None:
    p = record_path(root)
    return json.loads(p.read_text()) if p.exists() else None


def build_sample_store(root: str | Path, n_episodes: int = 400, seed: int = 0,
                       game: ForkGame | str = "default") -> Path:
    """Write ``game``'s gameplay to ``<root>.mp4``, extract it into the frame store ``root``, and
    note (game, seed, episodes) in ``<root>.game.json``."""
    from framegan.atomic import atomic_path
    from framegan.extract import extract

    game = get_game(game)
    root = Path(root)
    video = root.parent / f"{root.name}.mp4"
    root.parent.mkdir(parents=True, exist_ok=True)
    info = write_sample_video(video, n_episodes, seed, GRID, game=game)
    print(f"{game.name} fork game: {info['episodes']} episodes, {info['frames']} frames -> {video}")
    extract([video], root, size=(GRID, GRID), progress=False)
    record = {"game": asdict(game), "seed": seed, "episodes": n_episodes, "size": GRID,
              "video": video.name}
    with atomic_path(record_path(root)) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = Parser(prog="python -m framegan.sample_game",
                description="Write a fork game's gameplay to an mp4 (and its episode starts to .cuts.npy).")
    ap.add_argument("out", nargs="?", help="output .mp4")
    ap.add_argument("--game", default="default", help=f"one of: {', '.join(GAMES)} (default: default)")
    ap.add_argument("--episodes", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=GRID, help="frame side in pixels")
    ap.add_argument("--list", action="store_true", help="list the games and exit")
    args = ap.parse_args(argv)
    if not args.list:
        if args.out is None:
            raise UsageError("the output .mp4 is required (or --list)")
        if args.game not in GAMES:
            raise UsageError(f"--game {args.game!r}: not one of {', '.join(GAMES)}")
        if args.episodes < 1 or args.size < 8:
            raise UsageError("--episodes must be >= 1 and --size >= 8")
    return args


def run(args: argparse.Namespace) -> None:
    if args.list:
        for name, g in GAMES.items():
            print(f"{name:<11} {len(g.branches)} branches ({', '.join(g.branch_names)}): {DESCRIPTIONS[name]}")
        return
    info = write_sample_video(args.out, args.episodes, args.seed, args.size, game=args.game)
    shares = ", ".join(f"{k} {v:.2f}" for k, v in info["branch_share"].items())
    print(f"wrote {info['path']}: {info['game']} fork game, {info['episodes']} episodes, "
          f"{info['frames']} frames; branch share {shares}")


def main(argv: list[str] | None = None) -> int:
    from framegan.video import VideoError

    return run_main(lambda: run(parse_args(argv)), errors=(VideoError,))


if __name__ == "__main__":
    sys.exit(main())
