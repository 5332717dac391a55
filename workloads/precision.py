"""Mixed precision in one place: the autocast dtype of ``optim.precision`` and the autocast
region every reduced-precision pass runs in (the pretraining step, the SASSL stylizer)."""
from __future__ import annotations

import torch

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``optim.precision`` (None: fp32), refusing fp16 off a GPU."""
    if precision not in AMP_DTYPES:
        raise ValueError(f"optim.precision {precision!r}: choose one of {tuple(AMP_DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("optim.precision fp16 needs a CUDA device (its GradScaler); use bf16 or fp32 here")
    return AMP_DTYPES[precision]


def autocast(device_type: str, dtype: torch.dtype | None):
    """torch.autocast at ``dtype``; a no-op region when dtype is None (fp32)."""
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)
