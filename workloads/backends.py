"""Process-wide torch flags a training or evaluation process sets once: fast by default on
GPUs, reproducible with ``optim.deterministic``.

Default on a GPU: TF32 for fp32 matmuls and convolutions (Ampere and later; bf16/fp16
autocast regions are unaffected) and cuDNN's autotuner (``cudnn.benchmark``), which times the
algorithms for each new input shape and keeps the fastest. Both trade bitwise reproducibility
for speed: the autotuner may pick another algorithm in another process, and algorithms sum in
different orders.

``deterministic``: TF32 and the autotuner off, cuDNN's deterministic algorithms, torch's
deterministic implementations where they exist (``warn_only``: ops that have none on CUDA,
such as adaptive average pooling's backward, warn instead of stopping a run), and
``CUBLAS_WORKSPACE_CONFIG`` set before the first cuBLAS call, which cuBLAS needs for
deterministic matmuls. On a CPU the flags change nothing that matters: its kernels are
deterministic for a given machine and thread count already.
"""
from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"


def configure_backends(device: torch.device, deterministic: bool = False) -> dict[str, object]:
    """Set the flags for training on ``device``; returns what was set (for tests and logs)."""
    gpu = device.type == "cuda"
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE  # read when cuBLAS makes its handle
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = gpu and not deterministic
    tf32 = gpu and not deterministic
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"deterministic": deterministic, "cudnn.benchmark": torch.backends.cudnn.benchmark, "tf32": tf32,
            "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
