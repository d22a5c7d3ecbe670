"""Training speed at the default config: frames/s of a full GAN step, and how much of the CPU's
matmul throughput the step achieves.

    python benchmarks/train_speed.py [key=value ...]

Both numbers come from the same run: the step's FLOPs are counted by torch's FlopCounterMode
(convs and matmuls, forward and backward, D and G phases), divided by the measured step time,
and compared with the FLOP/s of a large bf16/fp32 matmul measured just before.
"""
from __future__ import annotations

import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from framegan import engine
from framegan.config import load_config
from framegan.nets import build_discriminator, build_generator, count_params
from framegan.precision import autocast_dtype


def matmul_flops(dtype: torch.dtype | None, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
    with ctx:
        a @ b
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        dt = time.perf_counter() - t
    return 2 * n ** 3 * reps / dt


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(None, argv if argv is not None else sys.argv[1:])
    dev = torch.device("cpu")
    dtype = autocast_dtype(cfg.train.precision, dev)
    K, B = cfg.data.context, cfg.train.batch_size
    torch.manual_seed(0)
    G, D = build_generator(cfg.model, K), build_discriminator(cfg.model, K)
    if cfg.train.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    gan = engine.build_gan(cfg, G, D, dev, dtype)
    clip = torch.rand(B, K + 1, 3, 64, 64) * 2 - 1

    def step(i: int) -> None:
        for _ in range(cfg.train.n_d):
            engine.d_step(gan, cfg, clip, i)
        engine.g_step(gan, cfg, clip, i)
        engine.update_ema(gan, cfg, i)

    step(1)  # warm-up (oneDNN primitive creation)
    with FlopCounterMode(display=False) as fc:
        step(1)  # R1 is lazy: step 1 is a typical step without it
    flops = fc.get_total_flops()
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        step(1)
    dt = (time.perf_counter() - t) / reps
    peak = matmul_flops(dtype)
    achieved = flops / dt
    print(f"config: G {count_params(G) / 1e6:.2f} M, D {count_params(D) / 1e6:.2f} M params, batch {B}, "
          f"variety_k {cfg.loss.variety_k}, autocast {dtype or 'off'}, threads {torch.get_num_threads()}")
    print(f"train step            {dt * 1000:8.1f} ms   ({1 / dt:.2f} steps/s)")
    print(f"training frames/s     {B / dt:8.1f}        (target frames learned from per second)")
    print(f"step FLOPs (counted)  {flops / 1e9:8.2f} GFLOP")
    print(f"achieved              {achieved / 1e9:8.1f} GFLOP/s")
    print(f"2048^3 matmul         {peak / 1e9:8.1f} GFLOP/s (same dtype, same run)")
    print(f"ratio achieved/matmul {achieved / peak:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
