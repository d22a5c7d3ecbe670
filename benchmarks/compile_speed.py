"""Does ``train.compile=true`` (torch.compile of G and D) pay on this CPU? The default training
step eager against compiled, from the same initial weights, interleaved in one run so that both
see the same machine load, and what compiling costs before the first compiled step returns.

    python benchmarks/compile_speed.py [key=value ...]

Compiled and eager steps run the same code (``engine.train_step``, ``update_ema``); the
compiled G and D are what ``framegan.train`` builds with ``train.compile=true``. The AVX2
approximation of ``benchmarks/train_speed.py`` applies here too (``train.precision=fp32`` with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2``).
"""
from __future__ import annotations

import copy
import statistics
import sys
import time

import torch

from framegan import engine
from framegan.config import load_config
from framegan.nets import build_discriminator, build_generator
from framegan.precision import autocast_dtype, describe_cpu


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(None, argv if argv is not None else sys.argv[1:])
    dtype = autocast_dtype(cfg.train.precision, "cpu")
    torch.manual_seed(0)
    nets = [build_generator(cfg.model, cfg.data.context), build_discriminator(cfg.model, cfg.data.context)]
    eager, compiled = (engine.build_gan(cfg, *copy.deepcopy(nets), torch.device("cpu"), dtype) for _ in range(2))
    compiled.G, compiled.D = torch.compile(compiled.G), torch.compile(compiled.D)  # as framegan.train does
    clip = torch.rand(cfg.train.batch_size, cfg.data.context + 1, 3, 64, 64) * 2 - 1

    def step(gan: engine.GAN, i: int) -> float:
        t = time.perf_counter()
        for _ in range(cfg.train.n_d - 1):
            engine.d_step(gan, cfg, clip, i)
        engine.train_step(gan, cfg, clip, i)
        engine.update_ema(gan, cfg, i)
        return time.perf_counter() - t

    t = time.perf_counter()
    for i in range(3):  # compiles G's and D's graphs for every call shape a step makes
        step(compiled, i)
    first = time.perf_counter() - t
    step(eager, 0)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(8):
        times["eager"].append(step(eager, i))
        times["compiled"].append(step(compiled, i))
    e, c = (statistics.median(times[k]) for k in ("eager", "compiled"))
    print(f"cpu: {describe_cpu()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, autocast {dtype or 'off'}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"first 3 compiled steps (compiling)  {first:7.1f} s")
    print(f"train step eager                    {e * 1000:7.1f} ms")
    print(f"train step compiled                 {c * 1000:7.1f} ms   ({e / c:.2f}x eager, same run)")
    print(f"steps until compiling pays off      {first / max(e - c, 1e-9):7.0f}" if e > c else
          "compiled is not faster here: compiling never pays off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
