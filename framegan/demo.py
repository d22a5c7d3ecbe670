"""python -m framegan.demo — the whole day on the built-in sample gameplay, in minutes on a CPU.

sample gameplay (mp4) -> frame store -> short GAN training -> rollout GIF -> evaluation table.
Re-running continues the same run (runs/demo) instead of starting over.
"""
from __future__ import annotations

import sys
from pathlib import Path

from framegan.cli import Parser, UsageError, add_precision
from framegan.sample_game import build_sample_store, episodes

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def main(argv: list[str] | None = None) -> int:
    from framegan import evaluate, rollout, train

    ap = Parser(prog="python -m framegan.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="training steps (default: fits ~5 CPU minutes)")
    ap.add_argument("--run", default="runs/demo", help="run directory")
    add_precision(ap, "of training, rollout and evaluation (auto: bf16 where the CPU has it natively)")
    try:
        args = ap.parse_args(argv)
    except UsageError as e:  # one line, as every framegan command
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = Path(args.run)
    data = Path("data/sample")
    if not (data / "manifest.json").exists():
        build_sample_store(data)
    # Segment 0 is episode 0 of the sample video (seed 0): start the rollout right after its fork,
    # and roll out as far as the episode goes (the character leaves the screen after it: a longer
    # rollout would show G drawing what neither the game nor the training ever showed).
    episode = next(episodes(1, seed=0))
    start, horizon = episode.fork + 1, len(episode.frames) - episode.fork - 1
    steps = [
        # The relax weight decays to its floor by 80 % of training (evolving WTA), as the default's 800 of 1000.
        ("train", train.main, ["--config", str(CONFIG), f"train.steps={args.steps}",
                               f"loss.variety_relax_steps={int(0.8 * args.steps)}", f"run.dir={run}",
                               f"train.precision={args.precision}"]),
        ("rollout", rollout.main, ["--checkpoint", str(run / "checkpoints" / "last.pt"), "--context", str(data),
                                   "--segment", "0", "--start", str(start), "--horizon", str(horizon), "--samples", "4",
                                   "--upscale", "3", "--out", str(run / "rollout.gif"),
                                   "--precision", args.precision]),
        ("evaluate", evaluate.main, ["--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(data),
                                     "--horizon", "4", "--samples", "4", "--out", str(run / "eval"),
                                     "--precision", args.precision]),
    ]
    for name, fn, argv_ in steps:
        print(f"\n== {name}: {' '.join(argv_)}", flush=True)
        rc = fn(argv_)
        if rc != 0:
            print(f"demo stopped: {name} failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"\nDone. Look at:\n  {run / 'rollout.gif'}      4 sampled futures (context first)\n"
          f"  {run / 'eval' / 'metrics.png'}  PSNR/SSIM per horizon vs copy-last\n"
          f"  tensorboard --logdir {run / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
