"""Record first-person 3D gameplay (ViZDoom, headless) to an mp4 plus actions and episode starts.

``python tools/record_vizdoom.py [--scenario deathmatch] [--frames N] [--frameskip 2] [--out FILE]``

Frames here are uint8 ``(H, W, 3)`` RGB screens (``--resolution``, default 160x120), written with
``framegan.video.write_video``; the model's ``(B, T, C, H, W)`` float tensors in [-1, 1] come
later, from the frame store that ``tools/extract_frames.py`` makes of the mp4.

The scenarios and the Freedoom WADs ship inside the ``vizdoom`` wheel, so nothing is downloaded;
the engine renders off-screen (no window, no display needed). The default scenario is
``deathmatch``: a multi-room map with textured walls, monsters that shoot back, weapon and health
pick-ups, so the view turns, moves, flashes and fills with sprites. Measured with this policy
(3,000 frames, frameskip 4): episodes of 60-600 recorded frames (the player dies, or the
4,200-tic timeout ends it), against 40-250 frames of turning in place in ``defend_the_center``,
a uniform green floor in ``health_gathering`` and one corridor maze in ``my_way_home`` (all its
episodes ran to the 525-frame timeout). Any other shipped scenario (``--scenario basic``) or a
``.cfg`` file works too; the action set below replaces the scenario's buttons.

The player is a "sticky random" policy, as in ``framegan.atari``: a uniformly random action of
``ACTIONS`` held for 1..``max_hold`` recorded frames. Each action is pressed for ``frameskip``
game tics (35 tics/s) between recorded frames. The default 2 records 17.5 frames/s, near the
Atari recordings' 15 (20,000 frames: 51 episodes). At frameskip 4 a turn moves the view 13 % of
its width per recorded frame and a step beside a wall replaces half of it: copy-last PSNR at
64x64 fell from 26.5 to 24.9 dB, and scene-cut detection could no longer tell such steps from
episode restarts (``benchmarks/scenecut_quality.py``). Damage and pick-up screen flashes are
drawn, as a player sees them (``flashes=False`` turns them off). When an episode ends the next
one starts and recording goes on.

Sidecars beside ``<out>`` (the format: ``framegan.actions``'s docstring):
  ``<stem>.actions.npy``       int64 ``[N]``: ``actions[i]`` = the index into ``ACTIONS`` pressed
                               after recorded frame ``i`` (cut off by the reset where the episode
                               ends there);
  ``<stem>.action_names.json`` ``{"0": "NOOP", "1": "FORWARD", ...}``;
  ``<stem>.cuts.npy``          int64 sorted frame indices where a new episode starts (frame 0,
                               the first episode's start, is not listed).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framegan.actions import ACTIONS as ACTIONS_FILE
from framegan.actions import CUTS, NAMES, sidecar, write_recording
from framegan.cli import Parser, run_main
from framegan.video import VideoError

DOOM_FPS = 35  # the Doom engine runs 35 tics per second
MISSING = "vizdoom is not installed: pip install -e '.[vizdoom]'"
# (name, buttons held): one button each, so every action is visibly different on screen.
ACTIONS = (
    ("NOOP", ()),
    ("FORWARD", ("MOVE_FORWARD",)),
    ("BACKWARD", ("MOVE_BACKWARD",)),
    ("TURN_LEFT", ("TURN_LEFT",)),
    ("TURN_RIGHT", ("TURN_RIGHT",)),
    ("STRAFE_LEFT", ("MOVE_LEFT",)),
    ("STRAFE_RIGHT", ("MOVE_RIGHT",)),
    ("ATTACK", ("ATTACK",)),
)
BUTTONS = ("MOVE_FORWARD", "MOVE_BACKWARD", "TURN_LEFT", "TURN_RIGHT", "MOVE_LEFT", "MOVE_RIGHT",
           "ATTACK")
SIDECARS = {"actions": ACTIONS_FILE, "action_names": NAMES, "cuts": CUTS}  # record()'s summary keys


class VizDoomError(ValueError):
    """Bad recording settings or an engine failure; the message is one line."""


def _vizdoom():
    try:
        import vizdoom
    except ImportError:
        raise VizDoomError(MISSING) from None
    return vizdoom


def scenario_config(scenario: str) -> Path:
    """The ``.cfg`` of a shipped scenario name ("deathmatch", "basic", ...) or a ``.cfg`` path."""
    vzd = _vizdoom()
    if scenario.endswith(".cfg"):
        path = Path(scenario)
        if not path.is_file():
            raise VizDoomError(f"--scenario {scenario}: no such file")
        return path
    shipped = sorted(p.stem for p in Path(vzd.scenarios_path).glob("*.cfg"))
    if scenario not in shipped:
        raise VizDoomError(f"--scenario {scenario}: not a shipped scenario ({', '.join(shipped)}) "
                           "or a .cfg file")
    return Path(vzd.scenarios_path) / f"{scenario}.cfg"


def screen_resolution(resolution: str):
    """``vizdoom.ScreenResolution`` for "160x120" (width x height)."""
    vzd = _vizdoom()
    names = [n for n in dir(vzd.ScreenResolution) if n.startswith("RES_")]
    name = f"RES_{resolution.upper()}"
    if name not in names:
        sizes = sorted((n[4:].lower() for n in names), key=lambda s: [int(v) for v in s.split("x")])
        raise VizDoomError(f"--resolution {resolution}: not a ViZDoom resolution (e.g. "
                           f"{', '.join(sizes[:6])}, ...)")
    return getattr(vzd.ScreenResolution, name)


def _check(frames: int, frameskip: int, max_hold: int) -> None:
    for name, value in (("--frames", frames), ("--frameskip", frameskip), ("--max-hold", max_hold)):
        if value < 1:
            raise VizDoomError(f"{name} {value}: must be >= 1")


def _start(vzd, config: Path, resolution, flashes: bool, seed: int, workdir: str):
    game = vzd.DoomGame()
    if not game.load_config(str(config.resolve())):
        raise VizDoomError(f"--scenario {config}: ViZDoom could not load this config")
    game.set_window_visible(False)
    game.set_mode(vzd.Mode.PLAYER)
    game.set_screen_resolution(resolution)
    game.set_screen_format(vzd.ScreenFormat.RGB24)
    game.set_render_screen_flashes(flashes)
    game.set_available_buttons([getattr(vzd.Button, b) for b in BUTTONS])
    game.set_sound_enabled(False)
    game.set_seed(seed % 2**31)
    # The engine writes _vizdoom.ini and a _vizdoom/ folder into its working directory: keep them
    # in a temp folder instead of the user's current one (it only reads the cwd while starting).
    game.set_doom_config_path(os.path.join(workdir, "_vizdoom.ini"))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        game.init()
    except Exception as e:  # vizdoom's own exception types, e.g. a missing WAD named in the cfg
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VizDoomError(f"--scenario {config}: ViZDoom did not start ({why})") from None
    finally:
        os.chdir(cwd)
    return game


def record(out: str | Path | None = None, *, scenario: str = "deathmatch", frames: int = 20000,
           frameskip: int = 2, max_hold: int = 10, resolution: str = "160x120",
           flashes: bool = True, seed: int = 0, progress: bool = True) -> dict:
    """Play ``scenario`` with the sticky random policy and write ``frames`` screens to ``out``
    (default ``data/vizdoom_<scenario>.mp4``, at 35 / ``frameskip`` fps) and the sidecars
    ``<stem>.actions.npy``, ``<stem>.action_names.json`` and ``<stem>.cuts.npy``. Returns a
    summary dict: out, actions, action_names, cuts, scenario, frames, episodes (cuts + 1), size
    [H, W], fps, seconds, frames_per_second. Raises ``VizDoomError`` / ``VideoError`` (one line)
    and then leaves no partial output behind."""
    _check(frames, frameskip, max_hold)
    vzd = _vizdoom()
    config = scenario_config(scenario)
    res = screen_resolution(resolution)
    out = Path(out) if out is not None else Path("data") / f"vizdoom_{config.stem}.mp4"
    sidecars = {key: sidecar(out, suffix) for key, suffix in SIDECARS.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    rng = np.random.default_rng(seed)
    presses = [[int(b in held) for b in BUTTONS] for _, held in ACTIONS]
    actions = np.empty(frames, np.int64)
    cuts: list[int] = []
    size = [0, 0]

    with tempfile.TemporaryDirectory(prefix="vizdoom.") as workdir, ExitStack() as stack:
        game = _start(vzd, config, res, flashes, seed, workdir)
        stack.callback(game.close)

        def screens():
            action, hold = 0, 0
            for i in tqdm(range(frames), unit="frame", disable=not progress, desc=str(out)):
                screen = game.get_state().screen_buffer  # uint8 (H, W, 3) with RGB24
                size[:] = screen.shape[:2]
                yield screen
                if hold == 0:
                    action, hold = int(rng.integers(len(ACTIONS))), int(rng.integers(1, max_hold + 1))
                actions[i], hold = action, hold - 1
                game.make_action(presses[action], frameskip)
                if game.is_episode_finished():  # died, or the scenario's timeout
                    game.new_episode()
                    if i + 1 < frames:
                        cuts.append(i + 1)
                    hold = 0

        fps = DOOM_FPS / frameskip
        write_recording(out, screens(), fps, actions, {k: name for k, (name, _) in enumerate(ACTIONS)}, cuts)
    seconds = time.perf_counter() - t0
    return {"out": str(out), **{k: str(p) for k, p in sidecars.items()}, "scenario": config.stem,
            "frames": frames, "episodes": len(cuts) + 1, "size": size, "fps": fps,
            "seconds": seconds, "frames_per_second": frames / max(seconds, 1e-9)}


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="record_vizdoom", description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="deathmatch",
                   help="a scenario shipped with vizdoom (deathmatch, defend_the_center, "
                        "health_gathering, my_way_home, basic, ...) or a .cfg file "
                        "(default deathmatch)")
    p.add_argument("--frames", type=int, default=20000, help="recorded frames (default 20000)")
    p.add_argument("--frameskip", type=int, default=2,
                   help="game tics per recorded frame; fps = 35 / frameskip (default 2)")
    p.add_argument("--max-hold", type=int, default=10,
                   help="the policy holds each random action 1..N recorded frames (default 10)")
    p.add_argument("--resolution", default="160x120",
                   help="screen WIDTHxHEIGHT, one of ViZDoom's (default 160x120)")
    p.add_argument("--no-flashes", action="store_true",
                   help="do not draw the damage / pick-up screen flashes")
    p.add_argument("--seed", type=int, default=0, help="policy and game seed (default 0)")
    p.add_argument("--out", help="video file (default data/vizdoom_<scenario>.mp4); sidecars go "
                                 "next to it: <stem>.actions.npy, .action_names.json, .cuts.npy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    def work():
        args = _parser().parse_args(argv)
        s = record(args.out, scenario=args.scenario, frames=args.frames, frameskip=args.frameskip,
                   max_hold=args.max_hold, resolution=args.resolution,
                   flashes=not args.no_flashes, seed=args.seed, progress=not args.quiet)
        h, w = s["size"]
        print(f"{s['out']}: {s['frames']} frames of {s['scenario']} ({w}x{h} at {s['fps']:g} fps, "
              f"{s['episodes']} episode{'s' * (s['episodes'] != 1)}), actions in {s['actions']}, "
              f"episode starts in {s['cuts']}; {s['seconds']:.1f} s, {s['frames_per_second']:.0f} frames/s")

    # OSError too: an unwritable --out directory, a full disk
    return run_main(work, (VizDoomError, VideoError))


if __name__ == "__main__":
    sys.exit(main())
