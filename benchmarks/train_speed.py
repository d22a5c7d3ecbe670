"""Training speed at the default config: frames/s of a full GAN step, and how much of the CPU's
matmul throughput the step achieves.

    python benchmarks/train_speed.py [key=value ...]

Both numbers come from the same run: the step's FLOPs are counted by torch's FlopCounterMode
(convs and matmuls, forward and backward, D and G phases), divided by the median step time (12
steps after 4 of warm-up), and compared with the FLOP/s of a large bf16/fp32 matmul measured just
after. Last, G's forward and backward on best-of-k's k draws of each context, encoded once
(``G(x, z, a, repeats=k)``, what the G phase runs) against the same on the k-times repeated contexts,
interleaved in this run; and two ways of computing the same layers, each against the plain formula
it replaces, interleaved: G's decoder levels (``blocks.upsample_conv`` against upsample + concat +
conv) and, for a model with keys (``model.actions=9``: random keys), D's key planes
(``discriminator.key_planes`` against tiling the one-hot keys over the frame); D's first layer
with each context's share computed once for all the pairs it is in (``pair``) against one conv
over every pair's stacked channels; the step with D training on the G phase's draws
(``engine.train_step``, what ``framegan.train`` runs) against G drawing D's fakes apart; and the
step with the default D (``model.d_width=16``) against the 32-wide D it replaced.

On a CPU with native bf16, an AVX2 machine can be approximated by restricting oneDNN and ATen to
AVX2 and training in fp32 (what ``train.precision=auto`` picks there):

    MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \
        python benchmarks/train_speed.py train.precision=fp32

(without the MKL variable the reference matmul still runs MKL's AVX-512 kernels: compare like
with like).
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch.utils.flop_counter import FlopCounterMode

from framegan import engine
from framegan.config import load_config
from framegan.nets import blocks, build_discriminator, build_generator, count_params
from framegan.nets.discriminator import PatchCNN, key_planes
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


def shared_encoding_ms(G: torch.nn.Module, dtype: torch.dtype | None, K: int, B: int, k: int,
                       reps: int = 12) -> tuple[float, float]:
    """Median ms of G's forward + backward for k draws of B contexts: (contexts repeated k times,
    each context encoded once), the two interleaved so that both see the same machine load."""
    ctx, z = torch.rand(B, K, 3, 64, 64) * 2 - 1, G.sample_z(k * B)
    a = torch.zeros(G.action_shape(k * B), dtype=torch.long) if G.num_actions else None
    ctx_k = repeat(ctx, "b t c h w -> (s b) t c h w", s=k)

    def run(shared: bool) -> float:
        t = time.perf_counter()
        G.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            y = G(ctx, z, a, repeats=k) if shared else G(ctx_k, z, a)
        y.float().sum().backward()
        return time.perf_counter() - t

    for shared in (False, True):
        run(shared)
    times = {False: [], True: []}
    for _ in range(reps):
        for shared in (False, True):
            times[shared].append(run(shared))
    return tuple(1000 * statistics.median(times[s]) for s in (False, True))


def stacked_pairs(net: PatchCNN, context, frame, pair=None) -> list[torch.Tensor]:
    """Each pair's (context, candidate[, candidate - last context frame]) channels, the context
    repeated per pair: the input of D's first conv as written."""
    if pair is not None:
        context = context[pair]
    parts = [rearrange(context, "b t c h w -> b (t c) h w"), frame]
    if net.motion:
        parts.append(frame - context[:, -1])
    return parts


@contextlib.contextmanager
def plain_layers():
    """G's decoder as upsample + concat + 3x3 conv, D's keys tiled over the frame as input planes:
    the formulas ``upsample_conv`` and ``key_planes`` compute (tests/test_nets.py)."""
    def decoder(self, h, skip, style=None, repeats=1):
        h = self.norm(blocks.upsample_concat_conv(h, skip, self.conv, repeats))
        return F.silu(self.film(h, style) if self.film is not None else h)

    def d_net(self, context, frame, keys=None, pair=None):
        parts = stacked_pairs(self, context, frame, pair)
        if keys is not None:
            parts.append(repeat(keys.to(frame.dtype), "b a -> b a h w", h=frame.shape[-2], w=frame.shape[-1]))
        h = self.net(torch.cat(parts, dim=1))
        return self.head(h), rearrange(h, "b f h w -> b h w f")

    saved = blocks.UpConvNormAct.forward, PatchCNN.forward
    blocks.UpConvNormAct.forward, PatchCNN.forward = decoder, d_net
    try:
        yield
    finally:
        blocks.UpConvNormAct.forward, PatchCNN.forward = saved


@contextlib.contextmanager
def repeated_d_contexts():
    """D's first layer as one conv over each pair's stacked (context, candidate) channels, the
    context repeated for every pair it is in (real, fake, wrong key; k draws), what D computed
    before ``pair``; key planes as framegan computes them."""
    def d_net(self, context, frame, keys=None, pair=None):
        x = torch.cat(stacked_pairs(self, context, frame, pair), dim=1)
        first, pixels = self.net[0], x.shape[1]
        weight = first.weight
        h = F.conv2d(x, weight[:, :pixels], first.bias, first.stride, first.padding)
        if keys is not None:
            h = h + key_planes(keys, weight[:, pixels:], first, frame.shape[-2:]).to(h.dtype)
        h = self.net[1:](h)
        return self.head(h), rearrange(h, "b f h w -> b h w f")

    saved, PatchCNN.forward = PatchCNN.forward, d_net
    try:
        yield
    finally:
        PatchCNN.forward = saved


def interleaved_steps_ms(steps: dict, rounds: int) -> dict:
    """Median ms of each of ``steps`` (name -> no-argument callable), run in turn for ``rounds``
    rounds so that all see the same machine load; the first round only warms up."""
    times = {name: [] for name in steps}
    for r in range(rounds):
        for name, fn in steps.items():
            t = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t)
    return {name: 1000 * statistics.median(ts) for name, ts in times.items()}


def interleaved_ms(fn, reps: int = 12, reference=plain_layers) -> tuple[float, float]:
    """Median ms of ``fn()`` under the ``reference`` formulas (a context manager; by default the
    plain layers) and with framegan's, interleaved (entering the reference only swaps methods)."""
    def under_reference() -> None:
        with reference():
            fn()

    ms = interleaved_steps_ms({"reference": under_reference, "framegan": fn}, rounds=reps + 1)
    return ms["reference"], ms["framegan"]


WIDE_D = 32  # D's width before the default became 16
TIMED_STEPS = 12  # single steps whose median is the headline step time, after 4 of warm-up


def build_step(cfg, dtype: torch.dtype | None, clip: torch.Tensor):
    """(G, D, step(i, one_draw=True)): one training step of ``cfg``'s networks on ``clip``."""
    K, B = cfg.data.context, clip.shape[0]
    G, D = build_generator(cfg.model, K), build_discriminator(cfg.model, K)
    if cfg.train.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    gan = engine.build_gan(cfg, G, D, torch.device("cpu"), dtype)
    actions = torch.randint(0, G.num_actions, (B, K + 1)) if G.num_actions else None

    def step(i: int, one_draw: bool = True) -> None:
        for _ in range(cfg.train.n_d - one_draw):
            engine.d_step(gan, cfg, clip, i, actions=actions)
        if one_draw:  # what framegan.train runs: D trains on the G phase's draws
            engine.train_step(gan, cfg, clip, i, actions=actions)
        else:  # D's fakes drawn by G for the D phase alone
            engine.g_step(gan, cfg, clip, i, actions=actions)
        engine.update_ema(gan, cfg, i)

    return G, D, step


def main(argv: list[str] | None = None) -> int:
    overrides = argv if argv is not None else sys.argv[1:]
    cfg = load_config(None, overrides)
    dev = torch.device("cpu")
    dtype = autocast_dtype(cfg.train.precision, dev)
    K, B = cfg.data.context, cfg.train.batch_size
    torch.manual_seed(0)
    clip = torch.rand(B, K + 1, 3, 64, 64) * 2 - 1
    G, D, step = build_step(cfg, dtype, clip)

    with FlopCounterMode(display=False) as fc:
        step(1)  # R1 is lazy: step 1 is a typical step without it
    flops = fc.get_total_flops()
    # The median of single steps after a warm-up: the first steps create oneDNN primitives and
    # grow the allocator (2-4x slower), and a mean of a few steps let one slow step from other
    # load on a shared machine move the figure by 30 % (seen on a 2-core EPYC).
    for _ in range(3):
        step(1)
    # one more warm-up step (the helper's first round), then the median of TIMED_STEPS
    dt = interleaved_steps_ms({"step": lambda: step(1)}, rounds=1 + TIMED_STEPS)["step"] / 1000
    peak = matmul_flops(dtype)
    achieved = flops / dt
    print(f"config: G {count_params(G) / 1e6:.2f} M, D {count_params(D) / 1e6:.2f} M params, batch {B}, "
          f"variety_k {cfg.loss.variety_k}, autocast {dtype or 'off'}, threads {torch.get_num_threads()}")
    print(f"train step            {dt * 1000:8.1f} ms   ({1 / dt:.2f} steps/s; median of {TIMED_STEPS})")
    print(f"training frames/s     {B / dt:8.1f}        (target frames learned from per second)")
    print(f"step FLOPs (counted)  {flops / 1e9:8.2f} GFLOP")
    print(f"achieved              {achieved / 1e9:8.1f} GFLOP/s")
    print(f"2048^3 matmul         {peak / 1e9:8.1f} GFLOP/s (same dtype, same run)")
    print(f"ratio achieved/matmul {achieved / peak:8.2f}")
    k = cfg.loss.variety_k
    if k > 1:
        rep, shared = shared_encoding_ms(G, dtype, K, B, k)
        print(f"G fwd+bwd, {k} draws of {B} contexts: repeated contexts {rep:.1f} ms, encoded once "
              f"{shared:.1f} ms ({rep / shared:.2f}x)")
    plain, fast = interleaved_ms(lambda: step(1), reps=6)
    print(f"train step, plain layers {plain:.1f} ms, framegan's {fast:.1f} ms ({plain / fast:.2f}x; "
          f"upsample_conv{' and key_planes' if G.num_actions else ''})")
    if cfg.loss.adv_weight > 0 and cfg.model.d_backbone == "cnn":
        plain, fast = interleaved_ms(lambda: step(1), reps=8, reference=repeated_d_contexts)
        print(f"train step, D's context repeated per pair {plain:.1f} ms, once per context {fast:.1f} ms "
              f"({plain / fast:.2f}x; pair)")
    if cfg.loss.adv_weight > 0 and cfg.model.d_width != WIDE_D:
        # The default D against the wider one it replaced: whole steps, interleaved.
        _, _, wide_step = build_step(load_config(None, [*overrides, f"model.d_width={WIDE_D}"]), dtype, clip)
        ms = interleaved_steps_ms({"wide": lambda: wide_step(1), "default": lambda: step(1)}, rounds=9)
        wide, default = ms["wide"], ms["default"]
        print(f"train step, D of width {WIDE_D} {wide:.1f} ms, of width {cfg.model.d_width} {default:.1f} ms "
              f"({wide / default:.2f}x)")
    ms = interleaved_steps_ms({"two": lambda: step(1, False), "one": lambda: step(1, True)}, rounds=7)
    two, one = ms["two"], ms["one"]
    print(f"train step, G drawing D's fakes apart {two:.1f} ms, D on the G phase's draws {one:.1f} ms "
          f"({two / one:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
