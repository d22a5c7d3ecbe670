"""1 vs 2 intra-op threads: batch-1 rollout (as ``python -m framegan.rollout`` runs it) and a default
training step, interleaved in one run so that load from other jobs hits both alike. Prints best,
median and worst of ``--repeats`` timings and the load average, since the answer depends on it
(the default of ``--threads`` in ``framegan.cli`` comes from this script).

    python benchmarks/threads_speed.py [--repeats 8] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from framegan import engine
from framegan.config import load_config
from framegan.inference import prepare
from framegan.nets import build_discriminator, build_generator
from framegan.precision import autocast_dtype, describe_cpu
from framegan.rollout import rollout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--frames", type=int, default=32, help="rollout frames per timing")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = load_config(None, [])
    cpu = torch.device("cpu")
    G = prepare(build_generator(cfg.model, cfg.data.context), cpu)
    context = torch.rand(cfg.data.context, 3, 64, 64) * 2 - 1
    gan = engine.build_gan(cfg, build_generator(cfg.model, cfg.data.context),
                           build_discriminator(cfg.model, cfg.data.context), cpu, autocast_dtype("auto", cpu))
    clip = torch.rand(cfg.train.batch_size, cfg.data.context + 1, 3, 64, 64) * 2 - 1

    def train_step() -> None:
        engine.train_step(gan, cfg, clip, 1)
        engine.update_ema(gan, cfg, 1)

    for n in args.threads:  # warm-up: oneDNN primitives for every thread count
        torch.set_num_threads(n)
        rollout(G, context, 2)
        train_step()
    fps = {n: [] for n in args.threads}
    step_s = {n: [] for n in args.threads}
    load_before = os.getloadavg()
    for r in range(args.repeats):
        for n in args.threads if r % 2 == 0 else args.threads[::-1]:
            torch.set_num_threads(n)
            t = time.perf_counter()
            rollout(G, context, args.frames)
            fps[n].append(args.frames / (time.perf_counter() - t))
            t = time.perf_counter()
            train_step()
            step_s[n].append(time.perf_counter() - t)
    print(f"{describe_cpu()}, torch {torch.__version__}; load average "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; {args.repeats} interleaved repeats")
    print(f"{'threads':>7}  {'rollout b1 f/s best/median/worst':>34}  {'train step s best/median/worst':>32}")
    for n in args.threads:
        f, s = fps[n], step_s[n]
        print(f"{n:>7}  {max(f):>12.1f} {statistics.median(f):>10.1f} {min(f):>10.1f}  "
              f"{min(s):>11.3f} {statistics.median(s):>9.3f} {max(s):>10.3f}")
    a, b = args.threads[0], args.threads[-1]
    print(f"best-case ratio {b} vs {a} threads: rollout {max(fps[b]) / max(fps[a]):.2f}x frames/s, "
          f"train step {min(step_s[a]) / min(step_s[b]):.2f}x speed")


if __name__ == "__main__":
    main()
