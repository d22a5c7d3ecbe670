"""Which autocast dtype to run in: one answer for training, rollout and evaluation.

``precision=auto`` per device kind (fastest *and* safe there):
  CUDA                          bf16 autocast where the GPU has bf16 (Ampere and newer), else fp16
                                with a GradScaler (engine.build_gan)
  CPU with native bf16          bf16 autocast. AVX512-BF16 or AMX in /proc/cpuinfo (Xeon Cooper
  (avx512_bf16 / amx_bf16)      Lake / Sapphire Rapids and newer, AMD Zen 4 and newer). Measured
                                on a 2-core AMX Xeon: default training step 413 vs 685 ms fp32
                                (benchmarks/train_speed.py, best of 3 alternating runs on a shared
                                machine), batch-8 rollout 2.35x torch fp32 vs 1.36x for fp32
                                channels_last (benchmarks/rollout_speed.py, same run); on a
                                2-core AMD EPYC with avx512_bf16 and no AMX, 1.53-1.71x fp32 per
                                step (interleaved), batch-32 rollout 2.84x torch fp32. Safe: bf16
                                keeps fp32's exponent range, so no loss scaling is needed, and the
                                engine computes the losses and G's residual output in fp32.
  CPU without (AVX2, AVX-512    fp32. oneDNN *emulates* bf16 there, 4x slower than fp32 on an AVX2
  without BF16, ARM, macOS)     AMD EPYC (issue 13), so auto never picks it; an explicit bf16
                                still runs, slowly.
Inference picks its backend on top of this (framegan.inference: ONNX Runtime fp32 at small batches).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is none: macOS,
    Windows). Read once: inference asks per call, and reading the file costs about 90 us."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    lines = (line for line in text.splitlines() if line.startswith("flags"))
    return frozenset(f for line in lines for f in line.split(":", 1)[-1].split())


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo (and lscpu) gives it; "unknown CPU" where none."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                "unknown CPU")


def describe_cpu() -> str:
    """The line every benchmark prints to name the CPU it ran on: model, usable CPUs and the
    flags that decide speed here (vector width, native bf16)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or "?"
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags()]
    return f"{cpu_model()}, {cpus} CPUs, flags: {' '.join(shown) or 'none of avx2/avx512f/avx512_bf16/amx_bf16'}"


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: where bf16 autocast measured about 2x faster on CPU. (oneDNN also
    *emulates* bf16 on plain AVX-512, which is not a speed-up, so its own check is not used.)"""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_avx512() -> bool:
    """AVX-512 (avx512f): on CPUs without it (AVX2 only) torch's fp32 convs beat ONNX Runtime's
    from batch 8 on (framegan.inference)."""
    return "avx512f" in cpu_flags()


def autocast_dtype(precision, device: torch.device | str) -> torch.dtype | None:
    """``precision`` is auto | fp32 | bf16 | fp16 (a ``config.Precision`` or its string);
    None means no autocast. auto: see the module docstring."""
    p = getattr(precision, "value", precision)
    if p != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and cpu_has_native_bf16() else None
