"""python -m framegan.demo — the whole day on the built-in sample gameplay, in minutes on a CPU.

sample gameplay (mp4) -> frame store -> short GAN training -> rollout GIF -> evaluation table.
Re-running continues the same run (runs/demo) instead of starting over: with more --steps it
trains on to them (on the run's own schedule), with as many or fewer it only rolls out and
evaluates again. Another --precision is another run: it says so and names the way out (--run
DIR), rather than mixing two runs in one directory.
"""
from __future__ import annotations

import sys
from pathlib import Path

from framegan.cli import Parser, UsageError, add_precision
from framegan.sample_game import build_sample_store, episodes

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def train_overrides(steps: int, precision: str, run: Path) -> list[str]:
    """The demo's overrides of the default config for ``--steps``/``--precision`` in ``run``.
    Where ``run`` already holds a demo run, they continue it: a resume may change how long a run
    goes, not what it computes, so the relax schedule (derived from --steps) stays the run's
    own; a change it cannot continue (another --precision) is a ``UsageError`` saying what to do."""
    from framegan.config import RESUME_MAY_CHANGE

    # The relax weight decays to its floor by 80 % of training (evolving WTA), as the default's 800 of 1000.
    relax = int(0.8 * steps)
    old = _run_config(run)
    if old is not None:
        was = getattr(old.train.precision, "value", old.train.precision)
        if was != precision and "train.precision" not in RESUME_MAY_CHANGE:
            raise UsageError(f"{run} holds a demo run trained with --precision {was}: pass --precision {was} "
                             f"to continue it, --run DIR to start another, or delete {run} to start over")
        if old.loss.variety_relax_steps != relax:
            if steps > old.train.steps:  # as many steps or fewer: nothing to train, nothing to say
                print(f"note: {run} continues to {steps} steps on the relax schedule it started with "
                      f"(loss.variety_relax_steps={old.loss.variety_relax_steps}); --run DIR starts a "
                      f"fresh run on the schedule of --steps {steps}")
            relax = old.loss.variety_relax_steps
    return [f"train.steps={steps}", f"loss.variety_relax_steps={relax}", f"run.dir={run}",
            f"train.precision={precision}"]


def _run_config(run: Path):
    """The config of the run in ``run`` (None where there is none, or its checkpoint is unusable:
    train then starts one, or reports what is wrong in its own words)."""
    from framegan.checkpoint import CheckpointError, checkpoint_config, load_checkpoint

    last = run / "checkpoints" / "last.pt"
    if not last.exists():
        return None
    try:
        return checkpoint_config(load_checkpoint(last), last)
    except CheckpointError:
        return None


def main(argv: list[str] | None = None) -> int:
    from framegan import evaluate, rollout, train

    ap = Parser(prog="python -m framegan.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="training steps (default: fits ~5 CPU minutes)")
    ap.add_argument("--run", default="runs/demo", help="run directory")
    add_precision(ap, "of training, rollout and evaluation (auto: bf16 where the CPU has it natively)")
    try:  # one line, as every framegan command, and before any work (a re-run that cannot continue)
        args = ap.parse_args(argv)
        run = Path(args.run)
        overrides = train_overrides(args.steps, args.precision, run)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = Path("data/sample")
    if not (data / "manifest.json").exists():
        build_sample_store(data)
    # Segment 0 is episode 0 of the sample video (seed 0): start the rollout right after its fork,
    # and roll out as far as the episode goes (the character leaves the screen after it: a longer
    # rollout would show G drawing what neither the game nor the training ever showed).
    episode = next(episodes(1, seed=0))
    start, horizon = episode.fork + 1, len(episode.frames) - episode.fork - 1
    steps = [
        ("train", train.main, ["--config", str(CONFIG), *overrides]),
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
