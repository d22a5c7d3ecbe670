"""Rollout speed on CPU: frames/s of ``framegan.rollout.rollout_batch`` vs the bare forward pass.

Default generator (``ModelConfig()``, K=4) at 64x64, batch 1 and 32. Modes:
  fp32            eager, NCHW weights
  fp32+cl         eager, channels_last weights
  bf16+cl         bf16 autocast + channels_last (what rollout/evaluate use by default here)
  compile+bf16    torch.compile (inductor, freezing) + bf16 + channels_last   [--compile only]
"forward" times G(x, z) on a fixed input; "rollout" runs the autoregressive loop (window shift,
clamp, feed back). loop overhead = forward fps / rollout fps. Each mode runs with 1 and with all
intra-op threads (``--threads``). Every number comes from this run; each is the best of
``--repeats`` interleaved timings (the CPU may be shared with other work).

    python benchmarks/rollout_speed.py [--batch 1 32] [--threads 1 2] [--horizon 16] [--compile]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from framegan.config import ModelConfig
from framegan.nets import build_generator, count_params
from framegan.rollout import inference, rollout_batch

TARGET_FPS = 300  # issue 5: batch 1, 2 CPU cores, default model


def make_mode(G0, mode: str):
    """(G, precision) for a mode; G is a fresh copy so modes do not share memory formats."""
    G = build_generator(ModelConfig(), 4).eval()
    G.load_state_dict(G0.state_dict())
    if mode != "fp32":
        G = G.to(memory_format=torch.channels_last)
    precision = "fp32" if mode.startswith("fp32") else "bf16"
    if mode.startswith("compile"):
        import torch._inductor.config as inductor

        inductor.freezing = True  # constant-fold weights (and their bf16 casts) into the graph
        G.forward = torch.compile(G.forward)
    return G, precision


def time_forward(G, precision: str, batch: int, calls: int) -> float:
    x = torch.rand(batch, 4, 3, 64, 64) * 2 - 1
    z = G.sample_z(batch)
    with inference(G, precision):  # the same no_grad + autocast context rollout_batch uses
        G(x, z)  # warm-up (oneDNN primitive creation, compile)
        t0 = time.perf_counter()
        for _ in range(calls):
            G(x, z)
    return batch * calls / (time.perf_counter() - t0)


def time_rollout(G, precision: str, batch: int, horizon: int) -> float:
    ctx = torch.rand(batch, 4, 3, 64, 64) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    rollout_batch(G, ctx, 2, 1, gen, precision)  # warm-up
    t0 = time.perf_counter()
    rollout_batch(G, ctx, horizon, 1, gen, precision)
    return batch * horizon / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}))
    ap.add_argument("--horizon", type=int, default=16, help="rollout length per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow first call)")
    args = ap.parse_args()

    torch.manual_seed(0)
    G0 = build_generator(ModelConfig(), 4).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        G0(torch.zeros(1, 4, 3, 64, 64), G0.sample_z(1))
    gflop = fc.get_total_flops() / 1e9
    print(f"default G: {count_params(G0) / 1e6:.2f} M params, {gflop:.2f} GFLOP per 64x64 frame; "
          f"torch {torch.__version__}, {torch.get_num_threads()} cores available, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")

    modes = ["fp32", "fp32+cl", "bf16+cl"] + (["compile+bf16"] if args.compile else [])
    built = {}
    for m in modes:
        t0 = time.perf_counter()
        built[m] = make_mode(G0, m)
        if m.startswith("compile"):
            time_forward(*built[m], batch=1, calls=1)
            print(f"torch.compile first call: {time.perf_counter() - t0:.1f} s")
    configs = [(m, b, n) for b in args.batch for m in modes for n in args.threads]
    best: dict[tuple, float] = {}
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every config alike
        for m, b, n in configs:
            torch.set_num_threads(n)
            G, prec = built[m]
            horizon = max(2, args.horizon * 8 // max(8, b))  # ~the same work per timing
            for kind, fps in (("forward", time_forward(G, prec, b, calls=max(2, 64 // b))),
                              ("rollout", time_rollout(G, prec, b, horizon))):
                best[m, b, n, kind] = max(best.get((m, b, n, kind), 0.0), fps)

    print(f"\n{'mode':14}{'batch':>6}{'threads':>8}{'forward f/s':>13}{'rollout f/s':>13}{'GFLOP/s':>9}"
          f"{'loop overhead':>15}{'vs fp32':>9}")
    for m, b, n in configs:
        f, r = best[m, b, n, "forward"], best[m, b, n, "rollout"]
        print(f"{m:14}{b:>6}{n:>8}{f:>13.1f}{r:>13.1f}{r * gflop:>9.0f}{f / r:>14.2f}x"
              f"{r / best['fp32', b, n, 'rollout']:>8.2f}x")
    if 1 in args.batch:
        (m, _, n), r1 = max(((k[:3], v) for k, v in best.items() if k[1] == 1 and k[3] == "rollout"),
                            key=lambda kv: kv[1])
        print(f"\nbatch-1 rollout: best {r1:.0f} frames/s ({m}, {n} threads) vs target {TARGET_FPS}: "
              f"{'met' if r1 >= TARGET_FPS else 'NOT met'}; {TARGET_FPS} frames/s needs "
              f"{TARGET_FPS * gflop:.0f} GFLOP/s sustained from this model")


if __name__ == "__main__":
    main()
