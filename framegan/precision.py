"""Which autocast dtype to run in: one answer for training, rollout and evaluation."""
from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: where bf16 autocast measured about 2x faster on CPU. (oneDNN also
    *emulates* bf16 on plain AVX-512, which is not a speed-up, so its own check is not used.)"""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def autocast_dtype(precision, device: torch.device | str) -> torch.dtype | None:
    """``precision`` is auto | fp32 | bf16 | fp16 (a ``config.Precision`` or its string);
    None means no autocast. auto: bf16 on CUDA (fp16 where bf16 is missing) and on CPUs with
    native bf16, fp32 elsewhere."""
    p = getattr(precision, "value", precision)
    if p != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and cpu_has_native_bf16() else None
