"""Record Atari gameplay (ale-py) to an mp4 plus the actions taken: real footage no one here drew.

``python tools/record_atari.py [--game MsPacman] [--frames N] [--frameskip 4] [--out FILE]``

Frames here are uint8 ``(210, 160, 3)`` RGB screens, written with ``framegan.video.write_video``;
the model's ``(B, T, C, H, W)`` float tensors in [-1, 1] come later, from the frame store that
``tools/extract_frames.py`` makes of the mp4.

The player is a "sticky random" policy: a uniformly random action from the game's minimal action
set, held for a random 1..``max_hold`` recorded frames (a fresh random action every frame would
just jitter in place). ALE's own sticky actions (``repeat_action_probability``, Machado et al. 2018)
add emulator-level randomness on top. On game over the game resets and recording goes on. In
Ms. Pac-Man that reset looks like a respawn with the dots back (16x16 thumbnail difference ~0.01,
measured, under the 0.03 colour gate of ``framegan.scenecut``, which found no cut in 3,000 frames
of 6 games), so no scene-cut detector can find it; the recorder knows it, so it writes the reset
frames to ``<stem>.cuts.npy`` and extraction starts a new segment there (no training window spans
two games). Respawns after a lost life stay inside a segment: they follow from the screen (death
animation, lives left).

Sprite flicker: the 2600 draws some sprites only every 2nd-4th frame (Ms. Pac-Man's ghosts: a
ghost showed in 38-77 % of single frames, measured). So each recorded frame is the per-pixel max
of the last ``max_pool`` emulator frames (DQN used 2; here 4 brought every ghost to the ~92 %
of frames in which Ms. Pac-Man herself is visible). ``max_pool=1`` records raw frames.

Sidecars (format in ``framegan.actions``): ``<out stem>.actions.npy``, int64 ``[N]``:
``actions[i]`` is the ALE action id (the ``ale_py.Action`` value, the same across games) the
policy pressed for the ``frameskip`` emulator frames after recorded frame ``i``, i.e. the
(frame, action) -> next frame convention; where a game over follows, that action is cut off by
the reset. ``<out stem>.action_names.json``: the ALE names of the game's minimal action set
(``{"0": "NOOP", "2": "UP", ...}``). ``<out stem>.cuts.npy``: int64 indices of the recorded frames
that start a new game (the first screen after each reset; empty when there was none).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from einops import reduce
from tqdm import tqdm

from framegan.actions import ACTIONS, CUTS, NAMES, sidecar, write_recording
from framegan.cli import Parser, run_main
from framegan.video import VideoError

ATARI_FPS = 60  # the 2600 runs at 60 frames/s (NTSC)
MISSING = "ale-py is not installed: pip install -e '.[atari]'"


class AtariError(ValueError):
    """Bad recording settings; the message is one line."""


def _ale():
    try:
        import ale_py
        import ale_py.roms  # a submodule the package does not import itself
    except ImportError:
        raise AtariError(MISSING) from None
    return ale_py


def rom_id(game: str) -> str:
    """ALE ROM id of ``game``: "MsPacman", "ms_pacman" and "ms-pacman" all give "ms_pacman"."""
    roms = _ale().roms
    ids = {i.replace("_", ""): i for i in roms.get_all_rom_ids()}
    key = game.lower().replace("_", "").replace("-", "").replace(" ", "")
    if key not in ids:
        raise AtariError(f"--game {game}: unknown ALE game (e.g. MsPacman, Breakout, Pong; "
                         f"ale-py {_ale().__version__} ships {len(ids)})")
    return ids[key]


def check_play(frames: int, frameskip: int, sticky: float, max_hold: int, max_pool: int) -> None:
    """The recorder's play settings (also key_effect's); a bad one is a one-line ``AtariError``."""
    for name, value in (("--frames", frames), ("--frameskip", frameskip), ("--max-hold", max_hold),
                        ("--max-pool", max_pool)):
        if value < 1:
            raise AtariError(f"{name} {value}: must be >= 1")
    if not 0.0 <= sticky <= 1.0:
        raise AtariError(f"--sticky {sticky}: must be in [0, 1]")


def open_game(game: str, seed: int = 0, sticky: float = 0.25):
    """(ALE emulator of ``game``, its minimal action set): seeded, sticky actions on, no frame
    skip (callers skip themselves, to max-pool the screens in between)."""
    ale_py = _ale()
    rom = ale_py.roms.get_rom_path(rom_id(game))
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", seed % 2**31)  # ALE's own randomness: sticky actions
    ale.setFloat("repeat_action_probability", sticky)
    ale.setInt("frame_skip", 1)
    ale.loadROM(str(rom))
    return ale, ale.getMinimalActionSet()


def record(out: str | Path | None = None, *, game: str = "MsPacman", frames: int = 20000,
           frameskip: int = 4, sticky: float = 0.25, max_hold: int = 15, max_pool: int = 4,
           seed: int = 0, progress: bool = True) -> dict:
    """Play ``game`` with the sticky random policy and write ``frames`` screens to ``out``
    (default ``data/<game>.mp4``, at 60 / ``frameskip`` fps) and the sidecars beside it (actions,
    action names, cuts at game resets). Returns a summary dict: out, actions, names, cuts (paths),
    game, frames, games (resets + 1), size, fps, seconds, frames_per_second. Raises ``AtariError``
    / ``VideoError`` (one line) and then leaves no partial output behind."""
    check_play(frames, frameskip, sticky, max_hold, max_pool)
    rom_id(game)  # an unknown game (or no ale-py) fails before anything is written
    out = Path(out) if out is not None else Path("data") / f"{game}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    ale, action_set = open_game(game, seed, sticky)
    rng = np.random.default_rng(seed)
    actions = np.empty(frames, np.int64)
    names = {a.value: a.name for a in action_set}
    cuts: list[int] = []  # recorded frames that start a new game
    games = 1

    def screens():
        nonlocal games
        recent = deque([ale.getScreenRGB()], maxlen=max_pool)
        action, hold = action_set[0], 0
        for i in tqdm(range(frames), unit="frame", disable=not progress, desc=str(out)):
            yield reduce(np.stack(recent), "p h w c -> h w c", "max")
            if hold == 0:
                action, hold = action_set[rng.integers(len(action_set))], rng.integers(1, max_hold + 1)
            actions[i], hold = action.value, hold - 1
            for _ in range(frameskip):
                ale.act(action)
                if ale.game_over():
                    ale.reset_game()
                    games += 1
                    if i + 1 < frames:
                        cuts.append(i + 1)
                    recent.clear()  # never pool across the cut
                    recent.append(ale.getScreenRGB())
                    hold = 0
                    break
                recent.append(ale.getScreenRGB())

    fps = ATARI_FPS / frameskip
    write_recording(out, screens(), fps, actions, names, cuts)
    seconds = time.perf_counter() - t0
    h, w = ale.getScreenDims()
    return {"out": str(out), "actions": str(sidecar(out, ACTIONS)), "names": str(sidecar(out, NAMES)),
            "cuts": str(sidecar(out, CUTS)), "game": game, "frames": frames,
            "games": games, "size": [h, w], "fps": fps, "seconds": seconds,
            "frames_per_second": frames / max(seconds, 1e-9)}


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="record_atari", description=__doc__.splitlines()[0])
    p.add_argument("--game", default="MsPacman", help="ALE game, e.g. MsPacman, Breakout, Pong "
                   "(CamelCase or the snake_case ROM id; default MsPacman)")
    p.add_argument("--frames", type=int, default=20000, help="recorded frames (default 20000)")
    p.add_argument("--frameskip", type=int, default=4,
                   help="emulator frames per recorded frame; fps = 60 / frameskip (default 4)")
    p.add_argument("--sticky", type=float, default=0.25,
                   help="ALE repeat_action_probability (default 0.25)")
    p.add_argument("--max-hold", type=int, default=15,
                   help="the policy holds each random action 1..N recorded frames (default 15)")
    p.add_argument("--max-pool", type=int, default=4,
                   help="per-pixel max over the last N emulator frames against sprite flicker; "
                        "1 = raw frames (default 4)")
    p.add_argument("--seed", type=int, default=0, help="policy and emulator seed (default 0)")
    p.add_argument("--out", help="video file (default data/<game>.mp4); actions go next to it "
                                 "as <stem>.actions.npy (+ .action_names.json, .cuts.npy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    def work():
        args = _parser().parse_args(argv)
        s = record(args.out, game=args.game, frames=args.frames, frameskip=args.frameskip,
                   sticky=args.sticky, max_hold=args.max_hold, max_pool=args.max_pool,
                   seed=args.seed, progress=not args.quiet)
        h, w = s["size"]
        print(f"{s['out']}: {s['frames']} frames of {s['game']} ({h}x{w} at {s['fps']:g} fps, "
              f"{s['games']} game{'s' * (s['games'] != 1)}), actions in {s['actions']}; {s['seconds']:.1f} s, "
              f"{s['frames_per_second']:.0f} frames/s")

    # OSError too: an unwritable --out directory, a full disk
    return run_main(work, (AtariError, VideoError))


if __name__ == "__main__":
    sys.exit(main())
